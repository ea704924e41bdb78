<?php

declare(strict_types=1);

namespace Flagd\Contracts;

/**
 * The subset of PSR-3 the client calls. Any object with these methods is accepted
 * (a PSR-3 logger, Laravel's `log` service, ...): the client checks for the methods
 * instead of this interface, so no Composer dependency on psr/log is needed.
 */
interface Logger
{
    /** @param array<string, mixed> $context */
    public function warning(string|\Stringable $message, array $context = []): void;

    /** @param array<string, mixed> $context */
    public function error(string|\Stringable $message, array $context = []): void;
}
