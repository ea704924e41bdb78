<?php

declare(strict_types=1);

namespace Flagd\Contracts;

use Flagd\Http\Response;
use Flagd\Http\TransportException;

/** Sends one HTTP POST. */
interface Transport
{
    /**
     * @param array<string, string> $headers
     *
     * @throws TransportException when no HTTP answer arrived (refused, timed out, reset)
     */
    public function post(string $url, array $headers, string $body, int $connectTimeoutMs, int $timeoutMs): Response;
}
