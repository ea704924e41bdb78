<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

use Flagd\Contracts\Transport;
use Flagd\Http\Response;
use Flagd\Http\TransportException;

/** Answers from a script of responses (or exceptions) and records every request. */
final class FakeTransport implements Transport
{
    /** @var list<array{url: string, headers: array<string, string>, body: string, connectTimeoutMs: int, timeoutMs: int}> */
    public array $requests = [];

    /** @var list<Response|TransportException|\Closure> */
    private array $script = [];

    public function then(Response|TransportException|\Closure ...$answers): self
    {
        array_push($this->script, ...$answers);

        return $this;
    }

    public function post(string $url, array $headers, string $body, int $connectTimeoutMs, int $timeoutMs): Response
    {
        $this->requests[] = compact('url', 'headers', 'body', 'connectTimeoutMs', 'timeoutMs');
        $answer = array_shift($this->script);
        if ($answer === null) {
            throw new \LogicException('FakeTransport: unexpected request #' . count($this->requests));
        }
        if ($answer instanceof \Closure) {
            $answer = $answer($url, $headers, $body);
        }
        if ($answer instanceof TransportException) {
            throw $answer;
        }

        return $answer;
    }

    /** A 200 bulk answer. @param array<string, mixed> $values key => value (variant = "v-" . json) */
    public static function bulk(array $values, string $etag = '"e1"'): Response
    {
        $flags = [];
        foreach ($values as $key => $value) {
            $flags[] = ['key' => $key, 'value' => $value, 'variant' => 'v-' . json_encode($value), 'reason' => 'STATIC', 'metadata' => []];
        }

        return new Response(200, ['etag' => $etag, 'content-type' => 'application/json'], json_encode(['flags' => $flags]));
    }

    public static function notModified(string $etag = '"e1"'): Response
    {
        return new Response(304, ['etag' => $etag]);
    }

    public static function down(): TransportException
    {
        return new TransportException('Connection refused (curl error 7)');
    }
}
