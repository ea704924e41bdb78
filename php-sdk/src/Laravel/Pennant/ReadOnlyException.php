<?php

declare(strict_types=1);

namespace Flagd\Laravel\Pennant;

/** Pennant writes (activate, deactivate, purge, ...) are refused: flagd owns the flags. */
final class ReadOnlyException extends \LogicException
{
    public static function for(string $operation, string $feature): self
    {
        return new self(sprintf(
            'The flagd Pennant driver is read-only: cannot %s `%s`. Change flags in flagd with flagctl (e.g. `flagctl enable %s --env production`) or its admin API.',
            $operation,
            $feature,
            $feature,
        ));
    }
}
