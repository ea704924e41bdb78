<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

use Flagd\Cache\ApcuCache;
use Flagd\Cache\ArrayCache;
use Flagd\Contracts\Cache;

/** APCu under a fresh prefix when the CLI has it enabled, else a per-process array. */
final class SharedCache
{
    public static function fresh(): Cache
    {
        return ApcuCache::isAvailable()
            ? new ApcuCache('flagd-test:' . bin2hex(random_bytes(6)) . ':')
            : new ArrayCache();
    }
}
