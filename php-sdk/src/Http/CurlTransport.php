<?php

declare(strict_types=1);

namespace Flagd\Http;

use Flagd\Contracts\Transport;

/**
 * POST over ext-curl with millisecond timeouts. One handle is kept for the life of the
 * object, so a long-lived process (or several contexts in one request) reuses the
 * keep-alive connection.
 */
final class CurlTransport implements Transport
{
    /** Far above any bulk answer a page should decode; it bounds what an error page can cost. */
    public const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

    private ?\CurlHandle $handle = null;

    /** @param int $maxBodyBytes a longer answer is abandoned as a failure, before it exhausts memory */
    public function __construct(private readonly int $maxBodyBytes = self::DEFAULT_MAX_BODY_BYTES)
    {
    }

    public function post(string $url, array $headers, string $body, int $connectTimeoutMs, int $timeoutMs): Response
    {
        $handle = $this->handle ??= curl_init();
        curl_reset($handle);

        $lines = [];
        foreach ($headers as $name => $value) {
            $lines[] = $name . ': ' . $value;
        }
        // curl would otherwise send `Expect: 100-continue` for larger bodies and wait for it.
        $lines[] = 'Expect:';

        $received = [];
        $answer = '';
        $tooLong = false;
        $limit = $this->maxBodyBytes;
        curl_setopt_array($handle, [
            CURLOPT_URL => $url,
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_HTTPHEADER => $lines,
            CURLOPT_WRITEFUNCTION => static function ($ch, string $chunk) use (&$answer, &$tooLong, $limit): int {
                if (strlen($answer) + strlen($chunk) > $limit) {
                    $tooLong = true;

                    return 0; // curl aborts the transfer
                }
                $answer .= $chunk;

                return strlen($chunk);
            },
            CURLOPT_FOLLOWLOCATION => false,
            // Sub-second timeouts need signals off (the default resolver times out via SIGALRM).
            CURLOPT_NOSIGNAL => true,
            CURLOPT_CONNECTTIMEOUT_MS => max(1, $connectTimeoutMs),
            CURLOPT_TIMEOUT_MS => max(1, $timeoutMs),
            CURLOPT_TCP_NODELAY => true,
            CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
            CURLOPT_HEADERFUNCTION => static function ($ch, string $line) use (&$received): int {
                $parts = explode(':', $line, 2);
                if (count($parts) === 2) {
                    $received[strtolower(trim($parts[0]))] = trim($parts[1]);
                } elseif (str_starts_with($line, 'HTTP/')) {
                    // A new status line (after a 100 Continue): forget the earlier headers.
                    $received = [];
                }

                return strlen($line);
            },
        ]);

        if (curl_exec($handle) === false) {
            $errno = curl_errno($handle);
            $message = $tooLong ? sprintf('the answer is longer than %d bytes', $limit) : curl_error($handle);
            // A failed connection may leave the handle in a state not worth reusing.
            curl_close($handle);
            $this->handle = null;

            throw new TransportException(
                sprintf('%s (curl error %d)', $message !== '' ? $message : 'request failed', $errno),
                $errno === CURLE_OPERATION_TIMEDOUT,
            );
        }

        return new Response((int) curl_getinfo($handle, CURLINFO_RESPONSE_CODE), $received, $answer);
    }
}
