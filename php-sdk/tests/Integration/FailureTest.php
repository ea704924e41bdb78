<?php

declare(strict_types=1);

namespace Flagd\Tests\Integration;

use Flagd\Client;
use Flagd\Context;
use Flagd\Contracts\Cache;
use Flagd\EvaluationDetails;
use Flagd\Http\CurlTransport;
use Flagd\Tests\Support\MemoryLogger;
use Flagd\Tests\Support\Misbehaving;
use Flagd\Tests\Support\Processes;
use Flagd\Tests\Support\Server;
use Flagd\Tests\Support\SharedCache;
use PHPUnit\Framework\TestCase;

/**
 * The service stopped, hanging, answering 500 or garbage: every call returns the last known
 * value or the default within the timeout, and once the breaker is open a call costs < 1 ms.
 */
final class FailureTest extends TestCase
{
    private const CONNECT_MS = 50;
    private const TIMEOUT_MS = 250;
    /** Scheduling slack on a shared machine. */
    private const SLACK_MS = 150;

    private Cache $cache;
    private MemoryLogger $logger;

    protected function setUp(): void
    {
        $this->cache = SharedCache::fresh();
        $this->logger = new MemoryLogger();
    }

    /** A client of one PHP request (the shared cache outlives it); TTL 0: every request revalidates. */
    private function client(string $url, string $token): Client
    {
        return new Client(
            url: $url,
            token: $token,
            cacheTtl: 0.0,
            connectTimeoutMs: self::CONNECT_MS,
            timeoutMs: self::TIMEOUT_MS,
            cache: $this->cache,
            logger: $this->logger,
            breakerThreshold: 3,
            breakerCooldown: 30.0,
        );
    }

    /** Warms the shared cache from the real server: it_fail_portal is on, theme "dark". */
    private function warm(string $token): void
    {
        $server = Server::shared();
        $flags = new Client($server->url, $token, cacheTtl: 0.0, connectTimeoutMs: 1000, timeoutMs: 2000, cache: $this->cache);
        self::assertTrue($flags->isEnabled('it_fail_portal', Context::company(42)));
        self::assertSame('dark', $flags->string('it_fail_theme', 'classic', Context::company(42)));
    }

    private static function token(): string
    {
        static $seeded = false;
        $server = Server::shared();
        if (!$seeded) {
            $server->createEnabledFlag('it_fail_portal');
            $server->admin('PUT', '/api/v1/flags/it_fail_portal/environments/production/rollout', ['percentage' => 100]);
            $server->createEnabledFlag('it_fail_theme', ['variants' => ['classic' => 'classic', 'dark' => 'dark'], 'offVariant' => 'classic', 'onVariant' => 'dark']);
            $server->admin('PUT', '/api/v1/flags/it_fail_theme/environments/production/rollout', ['percentage' => 100]);
            $seeded = true;
        }

        return $server->evaluateToken();
    }

    /**
     * Five PHP requests against a failing URL: stale (or default) values, each within the
     * timeout; then the breaker is open and a request costs under a millisecond.
     */
    private function assertDegradesGracefully(string $url, string $token, bool $stale): void
    {
        for ($request = 0; $request < 5; $request++) {
            $flags = $this->client($url, $token);
            $started = hrtime(true);
            $portal = $flags->isEnabled('it_fail_portal', Context::company(42));
            $theme = $flags->string('it_fail_theme', 'classic', Context::company(42));
            $details = $flags->details('it_fail_theme', Context::company(42));
            $elapsedMs = (hrtime(true) - $started) / 1e6;

            self::assertSame($stale, $portal, "request {$request}");
            self::assertSame($stale ? 'dark' : 'classic', $theme, "request {$request}");
            self::assertSame($stale ? EvaluationDetails::REASON_STALE : EvaluationDetails::REASON_ERROR, $details->reason);
            self::assertLessThan(self::TIMEOUT_MS + self::SLACK_MS, $elapsedMs, "request {$request} took {$elapsedMs} ms");
            self::assertLessThanOrEqual(1, $flags->requestCount(), 'at most one HTTP call per request');
            if ($request >= 3) {
                self::assertSame(0, $flags->requestCount(), 'the breaker is open');
                self::assertLessThan(1.0, $elapsedMs, "breaker open, yet request {$request} took {$elapsedMs} ms");
            }
        }
        self::assertTrue($this->client($url, $token)->breaker()->isOpen());
        self::assertNotEmpty($this->logger->records);
    }

    public function test_it_serves_stale_values_when_the_server_is_stopped(): void
    {
        $server = Server::start();
        try {
            $server->createEnabledFlag('it_fail_portal');
            $server->admin('PUT', '/api/v1/flags/it_fail_portal/environments/production/rollout', ['percentage' => 100]);
            $server->createEnabledFlag('it_fail_theme', ['variants' => ['classic' => 'classic', 'dark' => 'dark'], 'offVariant' => 'classic', 'onVariant' => 'dark']);
            $server->admin('PUT', '/api/v1/flags/it_fail_theme/environments/production/rollout', ['percentage' => 100]);
            $token = $server->evaluateToken();
            $warm = new Client($server->url, $token, cacheTtl: 0.0, connectTimeoutMs: 1000, timeoutMs: 2000, cache: $this->cache);
            self::assertTrue($warm->isEnabled('it_fail_portal', Context::company(42)));
            self::assertSame('dark', $warm->string('it_fail_theme', 'classic', Context::company(42)));
        } finally {
            $server->stop();
        }
        Processes::waitUntil(static fn (): bool => !Processes::acceptsConnections($server->port), 5.0, 'the port to close');

        $this->assertDegradesGracefully($server->url, $token, true);
        self::assertStringContainsString('unreachable', $this->logger->messages());
    }

    public function test_it_returns_defaults_when_the_server_is_stopped_and_nothing_is_cached(): void
    {
        $port = Processes::freePort();
        $this->assertDegradesGracefully("http://127.0.0.1:{$port}", 'any-token', false);
    }

    public function test_it_serves_stale_values_when_the_server_hangs(): void
    {
        $token = self::token();
        $this->warm($token);
        [$socket, $url] = Misbehaving::hanging();
        try {
            $this->assertDegradesGracefully($url, $token, true);
        } finally {
            fclose($socket);
        }
        self::assertMatchesRegularExpression('/timed out|Timeout/i', $this->logger->messages());
    }

    public function test_it_returns_defaults_when_the_server_hangs_and_nothing_is_cached(): void
    {
        [$socket, $url] = Misbehaving::hanging();
        try {
            $this->assertDegradesGracefully($url, 'any-token', false);
        } finally {
            fclose($socket);
        }
    }

    public function test_it_serves_stale_values_when_the_server_answers_500(): void
    {
        $token = self::token();
        $this->warm($token);
        $this->assertDegradesGracefully(Misbehaving::shared()->url . '/500', $token, true);
        self::assertStringContainsString('HTTP 500', $this->logger->messages());
    }

    public function test_it_serves_stale_values_when_the_server_answers_garbage(): void
    {
        $token = self::token();
        $this->warm($token);
        $this->assertDegradesGracefully(Misbehaving::shared()->url . '/garbage', $token, true);
        self::assertStringContainsString('not an OFREP bulk evaluation', $this->logger->messages());
    }

    public function test_it_returns_defaults_when_the_server_answers_html_and_nothing_is_cached(): void
    {
        $this->assertDegradesGracefully(Misbehaving::shared()->url . '/html', 'any-token', false);
    }

    public function test_it_abandons_an_answer_longer_than_the_transport_allows(): void
    {
        $flags = new Client(
            url: Misbehaving::shared()->url . '/huge',
            token: 'any-token',
            timeoutMs: 5000,
            cache: $this->cache,
            transport: new CurlTransport(maxBodyBytes: 1024 * 1024),
            logger: $this->logger,
        );
        $details = $flags->details('it_fail_portal', Context::company(42), false);
        self::assertSame([false, EvaluationDetails::REASON_ERROR], [$details->value, $details->reason]);
        self::assertStringContainsString('longer than 1048576 bytes', $this->logger->messages());
    }

    public function test_it_stops_asking_after_a_429_until_retry_after(): void
    {
        $token = self::token();
        $this->warm($token);
        $url = Misbehaving::shared()->url . '/429';
        $first = $this->client($url, $token);
        self::assertTrue($first->isEnabled('it_fail_portal', Context::company(42)));
        self::assertSame(1, $first->requestCount());
        self::assertStringContainsString('429', $this->logger->messages());

        $next = $this->client($url, $token);
        $started = hrtime(true);
        self::assertTrue($next->isEnabled('it_fail_portal', Context::company(42)));
        self::assertLessThan(1.0, (hrtime(true) - $started) / 1e6);
        self::assertSame(0, $next->requestCount());
    }
}
