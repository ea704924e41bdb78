<?php

declare(strict_types=1);

namespace Flagd\Http;

use Flagd\Contracts\Transport;

/**
 * POST over ext-curl with millisecond timeouts. One handle is kept for the life of the
 * object, so a long-lived process (or several contexts in one request) reuses the
 * keep-alive connection.
 *
 * `$caFile` is curl's `CURLOPT_CAINFO`: a PEM file of the certificate authorities that
 * verify an https:// server, for one whose certificate a private authority signed. It
 * replaces the CA bundle file libcurl was built with (Debian's
 * `/etc/ssl/certs/ca-certificates.crt`). It does not switch off libcurl's CA directory
 * (`CURLOPT_CAPATH`, `/etc/ssl/certs` on Debian) where libcurl has one, which curl's
 * OpenSSL backend still reads: the system's authorities may then stay trusted too.
 * A file that is missing or holds no PEM certificate is not checked here (a page must
 * not throw): curl fails each https:// request with its reason, and the client serves
 * the last known value or the default, and logs that reason.
 */
final class CurlTransport implements Transport
{
    /** Far above any bulk answer a page should decode; it bounds what an error page can cost. */
    public const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

    private ?\CurlHandle $handle = null;

    /**
     * @param int $maxBodyBytes a longer answer is abandoned as a failure, before it exhausts memory
     * @param string|null $caFile PEM file of the authorities to trust (`CURLOPT_CAINFO`); null
     *     or empty: curl's default bundle
     */
    public function __construct(
        private readonly int $maxBodyBytes = self::DEFAULT_MAX_BODY_BYTES,
        private readonly ?string $caFile = null,
    ) {
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
        if ($this->caFile !== null && $this->caFile !== '') {
            curl_setopt($handle, CURLOPT_CAINFO, $this->caFile);
        }

        if (curl_exec($handle) === false) {
            $errno = curl_errno($handle);
            $message = $tooLong ? sprintf('the answer is longer than %d bytes', $limit) : self::withoutTiming(curl_error($handle));
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

    /**
     * curl's message without the time it gives ("after 0 ms", "after 250 milliseconds"):
     * the client adds the time it measured itself, finer, and one time is enough.
     */
    private static function withoutTiming(string $message): string
    {
        return (string) preg_replace('/ after \d+ (?:ms|milliseconds)\b/', '', $message);
    }
}
