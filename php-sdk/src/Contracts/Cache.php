<?php

declare(strict_types=1);

namespace Flagd\Contracts;

/**
 * The store shared between PHP workers (APCu), or a per-process stand-in. TTLs are in
 * whole seconds and only bound how long an entry is kept: freshness is decided from
 * timestamps inside the values, so a cache that keeps entries longer is still correct.
 */
interface Cache
{
    /** The value, or null when absent. */
    public function get(string $key): mixed;

    public function set(string $key, mixed $value, int $ttlSeconds): void;

    /** Stores only when absent; true when this call stored it (atomic across workers for APCu). */
    public function add(string $key, mixed $value, int $ttlSeconds): bool;

    /** Adds one to an integer entry (created at 1) and returns the new value. */
    public function increment(string $key, int $ttlSeconds): int;

    public function delete(string $key): void;

    /** True when entries are visible to other processes. */
    public function isShared(): bool;
}
