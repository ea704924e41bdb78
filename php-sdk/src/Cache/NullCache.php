<?php

declare(strict_types=1);

namespace Flagd\Cache;

use Flagd\Contracts\Cache;

/** Keeps nothing: every PHP request asks flagd once per context. */
final class NullCache implements Cache
{
    public function get(string $key): mixed
    {
        return null;
    }

    public function set(string $key, mixed $value, int $ttlSeconds): void
    {
    }

    public function add(string $key, mixed $value, int $ttlSeconds): bool
    {
        return true;
    }

    public function increment(string $key, int $ttlSeconds): int
    {
        return 1;
    }

    public function delete(string $key): void
    {
    }

    public function isShared(): bool
    {
        return false;
    }
}
