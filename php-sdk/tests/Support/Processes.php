<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

/** Small helpers for child processes and ports, all waiting on conditions with deadlines. */
final class Processes
{
    public static function freePort(): int
    {
        $socket = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
        if ($socket === false) {
            throw new \RuntimeException("no free port: {$error}");
        }
        $name = (string) stream_socket_get_name($socket, false);
        fclose($socket);

        return (int) substr($name, strrpos($name, ':') + 1);
    }

    /**
     * Polls $condition until it returns true or the deadline passes.
     *
     * @param callable(): bool $condition
     */
    public static function waitUntil(callable $condition, float $seconds, string $what): void
    {
        $deadline = microtime(true) + $seconds;
        while (!$condition()) {
            if (microtime(true) > $deadline) {
                throw new \RuntimeException("timed out after {$seconds} s waiting for {$what}");
            }
            usleep(20_000);
        }
    }

    public static function acceptsConnections(int $port): bool
    {
        $socket = @stream_socket_client("tcp://127.0.0.1:{$port}", $errno, $error, 0.2);
        if ($socket === false) {
            return false;
        }
        fclose($socket);

        return true;
    }

    /**
     * Whether process $pid holds the socket listening on $port (Linux: the listening
     * socket's inode in /proc/net/tcp among the process's open files).
     */
    public static function listensOn(int $pid, int $port): bool
    {
        $inodes = [];
        foreach (['/proc/net/tcp', '/proc/net/tcp6'] as $table) {
            foreach (array_slice(@file($table, FILE_IGNORE_NEW_LINES) ?: [], 1) as $line) {
                // local address, remote address, state, …, inode (the tenth field).
                $fields = preg_split('/\s+/', trim($line));
                $local = explode(':', $fields[1] ?? '');
                if (hexdec((string) end($local)) === $port && ($fields[3] ?? '') === '0A') {
                    $inodes[] = "socket:[{$fields[9]}]";
                }
            }
        }
        foreach (glob("/proc/{$pid}/fd/*") ?: [] as $fd) {
            if (in_array(@readlink($fd), $inodes, true)) {
                return true;
            }
        }

        return false;
    }

    /**
     * @param list<string> $command
     * @param array<string, string>|null $env
     * @return resource
     */
    public static function start(array $command, string $logFile, ?array $env = null)
    {
        $process = proc_open(
            $command,
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', $logFile, 'a'], 2 => ['file', $logFile, 'a']],
            $pipes,
            null,
            $env,
        );
        if (!is_resource($process)) {
            throw new \RuntimeException('could not start ' . implode(' ', $command));
        }

        return $process;
    }

    /** @param resource $process */
    public static function stop($process): void
    {
        if (!is_resource($process)) {
            return;
        }
        if (proc_get_status($process)['running']) {
            proc_terminate($process, 15);
            try {
                self::waitUntil(static fn (): bool => !proc_get_status($process)['running'], 5.0, 'the process to stop');
            } catch (\RuntimeException) {
                proc_terminate($process, 9);
            }
        }
        proc_close($process);
    }

    public static function tempDir(string $name): string
    {
        $dir = sys_get_temp_dir() . '/flagd-php-' . $name . '-' . getmypid() . '-' . bin2hex(random_bytes(4));
        if (!mkdir($dir, 0o700, true) && !is_dir($dir)) {
            throw new \RuntimeException("cannot create {$dir}");
        }
        // Removed at exit, after the processes using it (stopped by earlier shutdown functions).
        register_shutdown_function(static function () use ($dir): void {
            register_shutdown_function(static fn () => self::removeTree($dir));
        });

        return $dir;
    }

    private static function removeTree(string $path): void
    {
        if (is_dir($path) && !is_link($path)) {
            foreach (array_diff((array) scandir($path), ['.', '..']) as $entry) {
                self::removeTree($path . '/' . $entry);
            }
            @rmdir($path);
        } elseif (file_exists($path) || is_link($path)) {
            @unlink($path);
        }
    }
}
