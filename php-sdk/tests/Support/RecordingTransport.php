<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

use Flagd\Contracts\Transport;
use Flagd\Http\CurlTransport;
use Flagd\Http\Response;

/** The real curl transport, recording each answer's status and the request headers. */
final class RecordingTransport implements Transport
{
    /** @var list<array{status: int, headers: array<string, string>}> */
    public array $calls = [];
    private CurlTransport $inner;

    public function __construct()
    {
        $this->inner = new CurlTransport();
    }

    public function post(string $url, array $headers, string $body, int $connectTimeoutMs, int $timeoutMs): Response
    {
        $response = $this->inner->post($url, $headers, $body, $connectTimeoutMs, $timeoutMs);
        $this->calls[] = ['status' => $response->status, 'headers' => $headers];

        return $response;
    }
}
