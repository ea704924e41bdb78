<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

/** Servers that fail: a `php -S` answering 500/garbage/429, and a socket that never answers. */
final class Misbehaving
{
    private static ?self $shared = null;

    /** @var resource|null */
    private $process;
    public readonly string $url;

    private function __construct()
    {
        $port = Processes::freePort();
        $this->url = "http://127.0.0.1:{$port}";
        $log = Processes::tempDir('php-s') . '/php-s.log';
        $this->process = Processes::start(
            [PHP_BINARY, '-S', "127.0.0.1:{$port}", __DIR__ . '/misbehaving-router.php'],
            $log,
        );
        Processes::waitUntil(function () use ($log): bool {
            if (!proc_get_status($this->process)['running']) {
                throw new \RuntimeException('php -S exited: ' . file_get_contents($log));
            }

            return @file_get_contents($this->url . '/ready') === 'ok';
        }, 10.0, 'php -S');
    }

    public static function shared(): self
    {
        if (self::$shared === null) {
            self::$shared = new self();
            register_shutdown_function(static function (): void {
                if (self::$shared !== null && self::$shared->process !== null) {
                    Processes::stop(self::$shared->process);
                }
            });
        }

        return self::$shared;
    }

    /**
     * A listening socket never accepted: the kernel completes the handshake, nobody answers.
     *
     * @return array{0: resource, 1: string} keep the resource alive while using the URL
     */
    public static function hanging(): array
    {
        $socket = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
        if ($socket === false) {
            throw new \RuntimeException($error);
        }
        $name = (string) stream_socket_get_name($socket, false);

        return [$socket, 'http://' . $name];
    }
}
