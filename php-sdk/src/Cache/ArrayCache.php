<?php

declare(strict_types=1);

namespace Flagd\Cache;

use Flagd\Contracts\Cache;

/**
 * A per-process cache: what the client falls back to for its circuit breaker without APCu,
 * and what tests use (with a fake clock).
 */
final class ArrayCache implements Cache
{
    /** @var array<string, array{0: mixed, 1: float|null}> value and expiry */
    private array $entries = [];

    /** @var \Closure(): float */
    private \Closure $clock;

    /** @param (callable(): float)|null $clock seconds, microtime(true) by default */
    public function __construct(?callable $clock = null)
    {
        $this->clock = $clock !== null ? \Closure::fromCallable($clock) : static fn (): float => microtime(true);
    }

    public function get(string $key): mixed
    {
        $entry = $this->entries[$key] ?? null;
        if ($entry === null) {
            return null;
        }
        if ($entry[1] !== null && ($this->clock)() >= $entry[1]) {
            unset($this->entries[$key]);

            return null;
        }

        return $entry[0];
    }

    public function set(string $key, mixed $value, int $ttlSeconds): void
    {
        $this->entries[$key] = [$value, $ttlSeconds > 0 ? ($this->clock)() + $ttlSeconds : null];
    }

    public function add(string $key, mixed $value, int $ttlSeconds): bool
    {
        if ($this->get($key) !== null) {
            return false;
        }
        $this->set($key, $value, $ttlSeconds);

        return true;
    }

    public function increment(string $key, int $ttlSeconds): int
    {
        $current = $this->get($key);
        if (!is_int($current)) {
            $this->set($key, 1, $ttlSeconds);

            return 1;
        }
        $this->entries[$key][0] = $current + 1;

        return $current + 1;
    }

    public function delete(string $key): void
    {
        unset($this->entries[$key]);
    }

    public function isShared(): bool
    {
        return false;
    }

    /** Drops everything (tests). */
    public function clear(): void
    {
        $this->entries = [];
    }
}
