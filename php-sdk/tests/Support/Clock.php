<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

/** A clock the test moves. */
final class Clock
{
    public function __construct(public float $now = 1_000_000.0)
    {
    }

    public function __invoke(): float
    {
        return $this->now;
    }

    public function advance(float $seconds): void
    {
        $this->now += $seconds;
    }
}
