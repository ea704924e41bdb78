<?php

declare(strict_types=1);

namespace Flagd\Cache;

use Flagd\Contracts\Cache;

/** Shared between every PHP-FPM worker of a pool through APCu. */
final class ApcuCache implements Cache
{
    public function __construct(private readonly string $prefix = 'flagd:')
    {
    }

    /** APCu is loaded and enabled for this SAPI (the CLI needs `apc.enable_cli=1`). */
    public static function isAvailable(): bool
    {
        return extension_loaded('apcu') && function_exists('apcu_enabled') && apcu_enabled();
    }

    public function get(string $key): mixed
    {
        $value = apcu_fetch($this->prefix . $key, $found);

        return $found ? $value : null;
    }

    public function set(string $key, mixed $value, int $ttlSeconds): void
    {
        apcu_store($this->prefix . $key, $value, max(0, $ttlSeconds));
    }

    public function add(string $key, mixed $value, int $ttlSeconds): bool
    {
        return apcu_add($this->prefix . $key, $value, max(0, $ttlSeconds));
    }

    public function increment(string $key, int $ttlSeconds): int
    {
        $value = apcu_inc($this->prefix . $key, 1, $success, max(0, $ttlSeconds));
        if ($success && is_int($value)) {
            return $value;
        }
        // Absent (or not an integer): start the count.
        apcu_store($this->prefix . $key, 1, max(0, $ttlSeconds));

        return 1;
    }

    public function delete(string $key): void
    {
        apcu_delete($this->prefix . $key);
    }

    public function isShared(): bool
    {
        return true;
    }
}
