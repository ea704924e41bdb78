<?php

declare(strict_types=1);

namespace Flagd;

use Flagd\Contracts\Cache;

/**
 * A circuit breaker whose state lives in the shared cache, so every worker of a pool sees
 * it: after `threshold` failures in a row it opens, and for `cooldown` seconds no request
 * touches the network. Then exactly one request (whichever wins an atomic `add`) is let
 * through as a probe: its success closes the breaker, its failure opens it again.
 *
 * The state is stored as timestamps inside the values, so it does not depend on how
 * precisely the cache expires entries.
 */
final class CircuitBreaker
{
    private const KEEP = 3600;

    /** @var \Closure(): float */
    private \Closure $clock;

    private bool $probing = false;

    /** @param (callable(): float)|null $clock */
    public function __construct(
        private readonly Cache $cache,
        private readonly string $name,
        public readonly int $threshold = 3,
        public readonly float $cooldown = 5.0,
        ?callable $clock = null,
    ) {
        $this->clock = $clock !== null ? \Closure::fromCallable($clock) : static fn (): float => microtime(true);
    }

    /** True when this request may call the service. */
    public function allowsRequest(): bool
    {
        $openUntil = $this->cache->get($this->key('open'));
        if (!is_float($openUntil) && !is_int($openUntil)) {
            return true;
        }
        $now = ($this->clock)();
        if ($now < $openUntil) {
            return false;
        }
        // Cool-down over: one probe. The probe mark expires on its own should that request die.
        if ($this->cache->add($this->key('probe'), $now, (int) ceil($this->cooldown) + 1)) {
            $this->probing = true;

            return true;
        }
        $probeStarted = $this->cache->get($this->key('probe'));
        if ((is_float($probeStarted) || is_int($probeStarted)) && $now - $probeStarted > $this->cooldown) {
            // A probe that never reported back (its worker died): take over.
            $this->cache->set($this->key('probe'), $now, (int) ceil($this->cooldown) + 1);
            $this->probing = true;

            return true;
        }

        return false;
    }

    public function isOpen(): bool
    {
        $openUntil = $this->cache->get($this->key('open'));

        return (is_float($openUntil) || is_int($openUntil)) && ($this->clock)() < $openUntil;
    }

    public function recordSuccess(): void
    {
        if ($this->probing || $this->cache->get($this->key('failures')) !== null) {
            $this->cache->delete($this->key('failures'));
            $this->cache->delete($this->key('open'));
            $this->cache->delete($this->key('probe'));
        }
        $this->probing = false;
    }

    public function recordFailure(): void
    {
        $failures = $this->cache->increment($this->key('failures'), self::KEEP);
        if ($this->probing || $failures >= $this->threshold) {
            $this->openFor($this->cooldown);
        }
    }

    /** Opens for a given time (a 429's `Retry-After`, or the cool-down). */
    public function openFor(float $seconds): void
    {
        $this->cache->set($this->key('open'), ($this->clock)() + $seconds, (int) ceil($seconds) + self::KEEP);
        $this->cache->delete($this->key('failures'));
        $this->cache->delete($this->key('probe'));
        $this->probing = false;
    }

    /** Closes it and forgets failures (tests, or an operator's reset). */
    public function reset(): void
    {
        $this->cache->delete($this->key('failures'));
        $this->cache->delete($this->key('open'));
        $this->cache->delete($this->key('probe'));
        $this->probing = false;
    }

    private function key(string $part): string
    {
        return 'breaker:' . $this->name . ':' . $part;
    }
}
