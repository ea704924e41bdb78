<?php

declare(strict_types=1);

namespace Flagd\Http;

/** No HTTP answer: connection refused, timed out, reset, DNS failure. */
final class TransportException extends \RuntimeException
{
    public function __construct(string $message, public readonly bool $timedOut = false)
    {
        parent::__construct($message);
    }
}
