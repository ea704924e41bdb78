<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

/**
 * A real flagd-server on a free port with its own SQLite database. `shared()` starts one
 * for the whole PHPUnit run; `start()` gives a private one (for tests that stop it).
 */
final class Server
{
    public const ADMIN_TOKEN = 'php-sdk-test-admin-token';

    private static ?self $shared = null;
    private static ?string $binary = null;

    /** @var resource|null */
    private $process;
    public readonly string $url;
    private ?string $evaluateToken = null;

    private function __construct(public readonly int $port, private readonly string $dir)
    {
        $this->url = "http://127.0.0.1:{$port}";
        $this->process = Processes::start(
            [
                self::binary(),
                '--listen', "127.0.0.1:{$port}",
                '--database-url', "sqlite:{$dir}/flagd.db",
                '--admin-token', self::ADMIN_TOKEN,
            ],
            "{$dir}/server.log",
            array_merge(getenv(), ['RUST_LOG' => getenv('RUST_LOG') ?: 'warn']),
        );
        try {
            Processes::waitUntil(function (): bool {
                if (!proc_get_status($this->process)['running']) {
                    throw new \RuntimeException("flagd-server exited:\n" . $this->log());
                }

                // A `/healthz` alone could be another server's, one that took the port
                // first: this process must be the one listening.
                return self::get($this->url . '/healthz') === 200
                    && Processes::listensOn(proc_get_status($this->process)['pid'], $this->port);
            }, 30.0, "flagd-server on port {$port}");
        } catch (\Throwable $e) {
            $this->stop();
            throw $e;
        }
    }

    public static function shared(): self
    {
        if (self::$shared === null) {
            self::$shared = self::start();
            register_shutdown_function(static function (): void {
                self::$shared?->stop();
            });
        }

        return self::$shared;
    }

    public static function start(): self
    {
        return self::startOn(Processes::freePort());
    }

    public static function startOn(int $port): self
    {
        return new self($port, Processes::tempDir('server'));
    }

    public function stop(): void
    {
        if ($this->process !== null) {
            Processes::stop($this->process);
            $this->process = null;
        }
    }

    public function log(): string
    {
        return (string) @file_get_contents("{$this->dir}/server.log");
    }

    /** An evaluate token for production, created once per server. */
    public function evaluateToken(string $environment = 'production'): string
    {
        if ($environment === 'production' && $this->evaluateToken !== null) {
            return $this->evaluateToken;
        }
        $answer = $this->admin('POST', '/api/v1/tokens', [
            'name' => 'php-sdk tests ' . $environment,
            'role' => 'evaluate',
            'environment' => $environment,
        ]);
        $token = $answer['value'] ?? $answer['token']['value'] ?? null;
        if (!is_string($token)) {
            throw new \RuntimeException('no token value in ' . json_encode($answer));
        }
        if ($environment === 'production') {
            $this->evaluateToken = $token;
        }

        return $token;
    }

    /**
     * One admin API call; fails on any non-2xx answer.
     *
     * @param array<string, mixed>|null $body
     * @param array<string, string> $headers
     * @return array<string, mixed>
     */
    public function admin(string $method, string $path, ?array $body = null, array $headers = [], ?array &$responseHeaders = null): array
    {
        $lines = ['Authorization: Bearer ' . self::ADMIN_TOKEN, 'Content-Type: application/json'];
        foreach ($headers as $name => $value) {
            $lines[] = "{$name}: {$value}";
        }
        $responseHeaders = [];
        $ch = curl_init($this->url . $path);
        curl_setopt_array($ch, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_HTTPHEADER => $lines,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT => 10,
            CURLOPT_HEADERFUNCTION => static function ($ch, string $line) use (&$responseHeaders): int {
                $parts = explode(':', $line, 2);
                if (count($parts) === 2) {
                    $responseHeaders[strtolower(trim($parts[0]))] = trim($parts[1]);
                }

                return strlen($line);
            },
        ]);
        if ($body !== null) {
            curl_setopt($ch, CURLOPT_POSTFIELDS, json_encode($body, JSON_PRESERVE_ZERO_FRACTION));
        }
        $answer = curl_exec($ch);
        $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        if ($answer === false || $status < 200 || $status >= 300) {
            throw new \RuntimeException("{$method} {$path} answered {$status}: " . var_export($answer, true) . ' ' . curl_error($ch));
        }
        $decoded = json_decode((string) $answer, true);

        return is_array($decoded) ? $decoded : [];
    }

    /**
     * Creates a flag and switches it on in production.
     *
     * @param array<string, mixed> $definition fields besides the key (variants, offVariant, onVariant)
     */
    public function createEnabledFlag(string $key, array $definition = []): void
    {
        $this->admin('POST', '/api/v1/flags', ['key' => $key] + $definition);
        $this->admin('POST', "/api/v1/flags/{$key}/environments/production/enable", ['reason' => 'php-sdk test']);
    }

    private static function get(string $url): int
    {
        $ch = curl_init($url);
        curl_setopt_array($ch, [CURLOPT_RETURNTRANSFER => true, CURLOPT_TIMEOUT_MS => 500, CURLOPT_NOSIGNAL => true]);
        curl_exec($ch);

        return (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
    }

    /** FLAGD_SERVER_BIN, else the executable `cargo build` reports (honouring CARGO_TARGET_DIR). */
    public static function binary(): string
    {
        if (self::$binary !== null) {
            return self::$binary;
        }
        $fromEnv = getenv('FLAGD_SERVER_BIN');
        if (is_string($fromEnv) && $fromEnv !== '') {
            if (!is_executable($fromEnv)) {
                throw new \RuntimeException("FLAGD_SERVER_BIN={$fromEnv} is not executable");
            }

            return self::$binary = $fromEnv;
        }
        $repo = dirname(__DIR__, 3);
        $command = 'cd ' . escapeshellarg($repo) . ' && cargo build -q -p flagd-server --message-format=json 2>/dev/null';
        $output = shell_exec($command);
        foreach (explode("\n", (string) $output) as $line) {
            $message = json_decode($line, true);
            if (
                is_array($message)
                && ($message['reason'] ?? null) === 'compiler-artifact'
                && ($message['target']['name'] ?? null) === 'flagd-server'
                && is_string($message['executable'] ?? null)
            ) {
                return self::$binary = $message['executable'];
            }
        }
        throw new \RuntimeException('could not build flagd-server; set FLAGD_SERVER_BIN to its path');
    }
}
