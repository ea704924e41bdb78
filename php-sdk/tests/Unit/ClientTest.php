<?php

declare(strict_types=1);

namespace Flagd\Tests\Unit;

use Flagd\Cache\ArrayCache;
use Flagd\Cache\NullCache;
use Flagd\Client;
use Flagd\Context;
use Flagd\Contracts\ProvidesFlagdContext;
use Flagd\EvaluationDetails;
use Flagd\FlagdException;
use Flagd\Http\Response;
use Flagd\Http\TransportException;
use Flagd\Tests\Support\Clock;
use Flagd\Tests\Support\FakeTransport;
use Flagd\Tests\Support\MemoryLogger;
use PHPUnit\Framework\TestCase;

final class ClientTest extends TestCase
{
    private Clock $clock;
    private ArrayCache $cache;
    private FakeTransport $transport;
    private MemoryLogger $logger;

    protected function setUp(): void
    {
        $this->clock = new Clock();
        $this->cache = new ArrayCache($this->clock);
        $this->transport = new FakeTransport();
        $this->logger = new MemoryLogger();
    }

    /** A new client on the same shared cache: what the next PHP request sees. */
    private function client(bool $strict = false, float $ttl = 1.0, int $staleTtl = Client::DEFAULT_STALE_TTL): Client
    {
        return new Client(
            url: 'http://flagd.test:8013/',
            token: 'eval-token',
            cacheTtl: $ttl,
            cache: $this->cache,
            transport: $this->transport,
            logger: $this->logger,
            strict: $strict,
            breakerThreshold: 3,
            breakerCooldown: 5.0,
            staleTtl: $staleTtl,
            clock: $this->clock,
        );
    }

    public function test_it_makes_one_bulk_request_per_context_however_many_flags_are_checked(): void
    {
        $this->transport->then(
            FakeTransport::bulk(['portal' => true, 'theme' => 'dark', 'limit' => 10, 'ratio' => 0.5, 'cfg' => ['a' => 1]]),
            FakeTransport::bulk(['portal' => false, 'theme' => 'light', 'limit' => 3, 'ratio' => 0.1, 'cfg' => []]),
        );
        $flags = $this->client();
        $ctx = Context::company(42);

        for ($i = 0; $i < 20; $i++) {
            self::assertTrue($flags->isEnabled('portal', $ctx));
            self::assertSame('dark', $flags->string('theme', 'classic', $ctx));
            self::assertSame(10, $flags->int('limit', 0, $ctx));
            self::assertSame(0.5, $flags->float('ratio', 0.0, $ctx));
            self::assertSame(['a' => 1], $flags->object('cfg', [], $ctx));
        }
        self::assertCount(1, $this->transport->requests);

        // Another company is another context: one more request, then memoized too.
        self::assertFalse($flags->isEnabled('portal', Context::company(7)));
        self::assertSame('light', $flags->string('theme', 'classic', Context::company(7)));
        self::assertCount(2, $this->transport->requests);
    }

    public function test_it_sends_the_context_and_token_to_the_bulk_endpoint(): void
    {
        $this->transport->then(FakeTransport::bulk([]));
        $this->client()->all(Context::company(42, 'user-1', ['plan' => 'pro']));

        $request = $this->transport->requests[0];
        self::assertSame('http://flagd.test:8013/ofrep/v1/evaluate/flags', $request['url']);
        self::assertSame('Bearer eval-token', $request['headers']['Authorization']);
        self::assertArrayNotHasKey('If-None-Match', $request['headers']);
        self::assertSame(
            ['context' => ['plan' => 'pro', 'companyId' => 42, 'targetingKey' => 'user-1']],
            json_decode($request['body'], true),
        );
        self::assertSame(50, $request['connectTimeoutMs']);
        self::assertSame(250, $request['timeoutMs']);
    }

    public function test_it_shares_answers_between_requests_through_the_cache_for_the_ttl(): void
    {
        $this->transport->then(FakeTransport::bulk(['portal' => true]));
        self::assertTrue($this->client()->isEnabled('portal', Context::company(42)));

        $this->clock->advance(0.9);
        $next = $this->client();
        self::assertTrue($next->isEnabled('portal', Context::company(42)));
        self::assertSame(0, $next->requestCount());
        self::assertCount(1, $this->transport->requests);
    }

    public function test_it_keys_the_shared_cache_by_context_whatever_the_attribute_order(): void
    {
        self::assertSame(
            Context::company(1, null, ['a' => 1, 'b' => ['y' => 2, 'x' => 1]])->cacheKey(),
            Context::company(1, null, ['b' => ['x' => 1, 'y' => 2], 'a' => 1])->cacheKey(),
        );
        self::assertNotSame(Context::company(1)->cacheKey(), Context::company('1')->cacheKey());
        self::assertNotSame(Context::company(1)->cacheKey(), Context::company(2)->cacheKey());
    }

    public function test_it_revalidates_with_if_none_match_after_the_ttl_and_a_304_refreshes_the_entry(): void
    {
        $this->transport->then(FakeTransport::bulk(['portal' => true], '"v1"'), FakeTransport::notModified('"v1"'));
        self::assertTrue($this->client()->isEnabled('portal', Context::company(42)));

        $this->clock->advance(1.5);
        $next = $this->client();
        self::assertTrue($next->isEnabled('portal', Context::company(42)));
        self::assertSame(EvaluationDetails::REASON_STALE === $next->details('portal', Context::company(42))->reason, false);
        self::assertSame('"v1"', $this->transport->requests[1]['headers']['If-None-Match']);

        // The 304 restarted the TTL: no request for another second.
        $this->clock->advance(0.8);
        $third = $this->client();
        self::assertTrue($third->isEnabled('portal', Context::company(42)));
        self::assertSame(0, $third->requestCount());
        self::assertCount(2, $this->transport->requests);
    }

    public function test_it_replaces_the_entry_when_revalidation_returns_a_new_answer(): void
    {
        $this->transport->then(
            FakeTransport::bulk(['portal' => true], '"v1"'),
            FakeTransport::bulk(['portal' => false], '"v2"'),
            FakeTransport::notModified('"v2"'),
        );
        self::assertTrue($this->client()->isEnabled('portal', Context::company(42)));
        $this->clock->advance(2);
        self::assertFalse($this->client()->isEnabled('portal', Context::company(42)));
        $this->clock->advance(2);
        self::assertFalse($this->client()->isEnabled('portal', Context::company(42)));
        self::assertSame('"v2"', $this->transport->requests[2]['headers']['If-None-Match']);
    }

    public function test_it_knows_a_key_only_from_an_answer_and_does_not_guess_without_one(): void
    {
        $this->transport->then(FakeTransport::bulk(['portal' => true]));
        $flags = $this->client(strict: true);
        self::assertTrue($flags->knows('portal', Context::company(42)));
        self::assertFalse($flags->knows('nope', Context::company(42)), 'no exception in strict mode');

        // The answer kept through an outage still says which keys flagd knows.
        $this->clock->advance(2);
        $this->transport->then(FakeTransport::down(), FakeTransport::down());
        $stale = $this->client();
        self::assertFalse($stale->knows('nope', Context::company(42)), 'from the stale answer');
        self::assertTrue($stale->knows('portal', Context::company(42)));
        self::assertNull($stale->knows('portal', Context::company(7)), 'nothing kept for this context');
    }

    public function test_it_returns_the_default_when_the_service_is_down_and_nothing_is_cached(): void
    {
        $this->transport->then(FakeTransport::down());
        $flags = $this->client();
        $ctx = Context::company(42);

        self::assertFalse($flags->isEnabled('portal', $ctx));
        self::assertTrue($flags->isEnabled('portal', $ctx, true));
        self::assertSame('classic', $flags->string('theme', 'classic', $ctx));
        self::assertSame(7, $flags->int('limit', 7, $ctx));
        self::assertSame([], $flags->all($ctx));
        $details = $flags->details('portal', $ctx, 'dflt');
        self::assertSame('dflt', $details->value);
        self::assertSame(EvaluationDetails::REASON_ERROR, $details->reason);
        self::assertSame(EvaluationDetails::GENERAL, $details->errorCode);
        self::assertStringContainsString('unreachable', (string) $details->errorMessage);
        // One request for the whole PHP request, one log line.
        self::assertCount(1, $this->transport->requests);
        self::assertCount(1, $this->logger->records);
        self::assertStringContainsString('serving defaults', $this->logger->messages());
    }

    public function test_it_serves_the_last_known_value_when_revalidation_fails(): void
    {
        $this->transport->then(
            FakeTransport::bulk(['portal' => true, 'theme' => 'dark']),
            new Response(500, [], 'oops'),
            new Response(200, [], '<html>garbage</html>'),
            new Response(200, [], '{"flags": "nope"}'),
        );
        self::assertTrue($this->client()->isEnabled('portal', Context::company(42)));

        for ($i = 0; $i < 3; $i++) {
            $this->clock->advance(2);
            $flags = $this->client();
            self::assertTrue($flags->isEnabled('portal', Context::company(42)), "attempt {$i}");
            self::assertSame('dark', $flags->string('theme', 'classic', Context::company(42)));
            self::assertSame(EvaluationDetails::REASON_STALE, $flags->details('theme', Context::company(42))->reason);
        }
        self::assertCount(4, $this->transport->requests);
        self::assertStringContainsString('HTTP 500', $this->logger->messages());
        self::assertStringContainsString('not an OFREP bulk evaluation', $this->logger->messages());
    }

    public function test_it_serves_the_default_not_the_last_known_value_when_stale_ttl_is_0_or_less(): void
    {
        foreach ([0, -30] as $staleTtl) {
            $this->setUp();
            $this->transport->then(
                FakeTransport::bulk(['portal' => true], '"v1"'),
                FakeTransport::down(),
                new Response(500, [], 'oops'),
                FakeTransport::down(),
                FakeTransport::notModified('"v1"'),
            );
            $ctx = Context::company(42);
            self::assertTrue($this->client(staleTtl: $staleTtl)->isEnabled('portal', $ctx), "staleTtl {$staleTtl}");

            // Failures, then the breaker they opened: the default every time.
            for ($i = 0; $i < 4; $i++) {
                $this->clock->advance(1.5);
                $details = $this->client(staleTtl: $staleTtl)->details('portal', $ctx, false);
                self::assertSame(
                    [false, EvaluationDetails::REASON_ERROR, EvaluationDetails::GENERAL],
                    [$details->value, $details->reason, $details->errorCode],
                    "staleTtl {$staleTtl}, failure {$i}",
                );
            }
            self::assertCount(4, $this->transport->requests, 'the fourth check met the open breaker');
            self::assertStringContainsString('past staleTtl (0 s)', $this->logger->messages());

            // The answer was kept for its ETag: once flagd is back, a 304 serves it again.
            $this->clock->advance(5);
            $flags = $this->client(staleTtl: $staleTtl);
            $details = $flags->details('portal', $ctx, false);
            self::assertSame([true, 'STATIC'], [$details->value, $details->reason], "staleTtl {$staleTtl}");
            self::assertSame('"v1"', $this->transport->requests[4]['headers']['If-None-Match'] ?? null);
        }
    }

    public function test_it_serves_the_last_known_value_for_stale_ttl_seconds_after_the_cache_ttl_then_the_default(): void
    {
        $this->transport->then(
            FakeTransport::bulk(['portal' => true]),
            FakeTransport::down(),
            FakeTransport::down(),
        );
        $ctx = Context::company(42);
        self::assertTrue($this->client(staleTtl: 10)->isEnabled('portal', $ctx));

        // Fresh for the 1 s cache TTL, then served through the outage for 10 s more.
        $this->clock->advance(1 + 9.5);
        $details = $this->client(staleTtl: 10)->details('portal', $ctx, false);
        self::assertSame([true, EvaluationDetails::REASON_STALE], [$details->value, $details->reason]);

        $this->clock->advance(1);
        $flags = $this->client(staleTtl: 10);
        $details = $flags->details('portal', $ctx, false);
        self::assertSame(
            [false, EvaluationDetails::REASON_ERROR, EvaluationDetails::GENERAL],
            [$details->value, $details->reason, $details->errorCode],
        );
        self::assertNull($flags->knows('portal', $ctx), 'no answer left to read');
        self::assertCount(3, $this->transport->requests);
    }

    public function test_it_opens_the_breaker_after_repeated_failures_and_a_probe_closes_it(): void
    {
        $this->transport->then(FakeTransport::down(), FakeTransport::down(), FakeTransport::down());
        for ($i = 0; $i < 3; $i++) {
            self::assertSame('x', $this->client()->string('theme', 'x', Context::company(42)));
            $this->clock->advance(0.1);
        }
        self::assertTrue($this->client()->breaker()->isOpen());
        self::assertStringContainsString('circuit breaker open', $this->logger->messages());

        // Open: no request at all, for any context, in any later PHP request.
        for ($i = 0; $i < 10; $i++) {
            $flags = $this->client();
            self::assertSame('x', $flags->string('theme', 'x', Context::company($i)));
            self::assertSame(0, $flags->requestCount());
            $this->clock->advance(0.4);
        }
        self::assertCount(3, $this->transport->requests);

        // After the cool-down one probe goes out; it succeeds and closes the breaker.
        $this->clock->advance(1.5);
        $this->transport->then(FakeTransport::bulk(['theme' => 'dark']), FakeTransport::bulk(['theme' => 'light']));
        $probe = $this->client();
        self::assertSame('dark', $probe->string('theme', 'x', Context::company(42)));
        self::assertSame(1, $probe->requestCount());
        self::assertFalse($probe->breaker()->isOpen());
        self::assertSame('light', $this->client()->string('theme', 'x', Context::company(43)));
    }

    public function test_it_lets_only_one_probe_through_and_a_failed_probe_reopens_the_breaker(): void
    {
        $this->transport->then(FakeTransport::down(), FakeTransport::down(), FakeTransport::down());
        for ($i = 0; $i < 3; $i++) {
            $this->client()->isEnabled('portal', Context::company(42));
        }
        $this->clock->advance(5.1);

        $probing = $this->client()->breaker();
        self::assertTrue($probing->allowsRequest());
        // A second worker during the probe stays off the network.
        self::assertFalse($this->client()->breaker()->allowsRequest());

        $probing->recordFailure();
        self::assertTrue($this->client()->breaker()->isOpen());
        $this->clock->advance(4.9);
        self::assertFalse($this->client()->breaker()->allowsRequest());
    }

    public function test_it_serves_stale_values_while_the_breaker_is_open(): void
    {
        $this->transport->then(FakeTransport::bulk(['portal' => true]), FakeTransport::down(), FakeTransport::down(), FakeTransport::down());
        $this->client()->isEnabled('portal', Context::company(42));
        for ($i = 0; $i < 3; $i++) {
            $this->clock->advance(2);
            self::assertTrue($this->client()->isEnabled('portal', Context::company(42)));
        }
        $this->clock->advance(1);
        $flags = $this->client();
        self::assertTrue($flags->isEnabled('portal', Context::company(42)));
        self::assertSame(0, $flags->requestCount());
        self::assertSame(EvaluationDetails::REASON_STALE, $flags->details('portal', Context::company(42))->reason);
    }

    public function test_it_honours_retry_after_on_429(): void
    {
        $this->transport->then(new Response(429, ['retry-after' => '30'], ''));
        self::assertTrue($this->client()->isEnabled('portal', Context::company(1), true));
        self::assertStringContainsString('429', $this->logger->messages());

        $this->clock->advance(29);
        $flags = $this->client();
        self::assertFalse($flags->isEnabled('portal', Context::company(1)));
        self::assertSame(0, $flags->requestCount());

        $this->clock->advance(1.5);
        $this->transport->then(FakeTransport::bulk(['portal' => true]));
        self::assertTrue($this->client()->isEnabled('portal', Context::company(1)));
    }

    public function test_it_parses_retry_after_as_seconds_or_an_http_date(): void
    {
        self::assertSame(12.0, Client::retryAfterSeconds('12', 0.0));
        $now = (float) strtotime('2030-01-01 00:00:00 UTC');
        self::assertSame(90.0, Client::retryAfterSeconds('Tue, 01 Jan 2030 00:01:30 GMT', $now));
        self::assertNull(Client::retryAfterSeconds('soon', $now));
        self::assertNull(Client::retryAfterSeconds(null, $now));
    }

    public function test_it_reports_401_and_403_clearly_as_errors(): void
    {
        $this->transport->then(
            new Response(401, [], '{"error":{"code":"UNAUTHORIZED","message":"unknown token"}}'),
            new Response(403, [], '{"error":{"code":"FORBIDDEN","message":"needs an evaluate token"}}'),
        );
        self::assertFalse($this->client()->isEnabled('portal', Context::company(1)));
        self::assertTrue($this->client()->isEnabled('portal', Context::company(2), true));
        self::assertSame('error', $this->logger->records[0][0]);
        self::assertStringContainsString('401 Unauthorized', $this->logger->records[0][1]);
        self::assertStringContainsString('FLAGD_TOKEN', $this->logger->records[0][1]);
        self::assertStringContainsString('unknown token', $this->logger->records[0][1]);
        self::assertStringContainsString('403 Forbidden', $this->logger->messages());
    }

    public function test_it_serves_defaults_not_the_last_known_values_on_401_and_403_until_the_token_works_again(): void
    {
        $this->transport->then(
            FakeTransport::bulk(['portal' => true]),
            new Response(401, [], '{"error":{"code":"UNAUTHORIZED","message":"token revoked"}}'),
            new Response(403, [], '{"error":{"code":"FORBIDDEN","message":"needs an evaluate token"}}'),
            FakeTransport::notModified(),
            FakeTransport::down(),
        );
        $ctx = Context::company(1);
        self::assertTrue($this->client()->isEnabled('portal', $ctx));

        foreach (['401 Unauthorized', '403 Forbidden'] as $status) {
            $this->clock->advance(2);
            $details = $this->client()->details('portal', $ctx, false);
            self::assertSame(
                [false, EvaluationDetails::REASON_ERROR, EvaluationDetails::GENERAL],
                [$details->value, $details->reason, $details->errorCode],
                $status,
            );
            self::assertStringContainsString($status, (string) $details->errorMessage);
            self::assertStringContainsString('FLAGD_TOKEN', (string) $details->errorMessage);
        }
        self::assertStringContainsString('serving defaults', $this->logger->records[1][1]);

        // The token works again: the kept answer is revalidated (304), and a later outage
        // serves it as the last known value again.
        $this->clock->advance(2);
        self::assertTrue($this->client()->isEnabled('portal', $ctx));
        self::assertArrayHasKey('If-None-Match', $this->transport->requests[3]['headers']);
        $this->clock->advance(2);
        self::assertSame(EvaluationDetails::REASON_STALE, $this->client()->details('portal', $ctx)->reason);
        self::assertCount(5, $this->transport->requests);
    }

    public function test_it_returns_the_default_on_type_mismatch_and_unknown_flags(): void
    {
        $this->transport->then(new Response(200, ['etag' => '"x"'], json_encode(['flags' => [
            ['key' => 'portal', 'value' => true, 'variant' => 'on', 'reason' => 'STATIC', 'metadata' => []],
            ['key' => 'count', 'value' => 3.0, 'variant' => 'three', 'reason' => 'STATIC', 'metadata' => []],
            ['key' => 'broken', 'errorCode' => 'PARSE_ERROR', 'errorDetails' => 'bad rule'],
        ]], JSON_PRESERVE_ZERO_FRACTION)));
        $flags = $this->client();
        $ctx = Context::company(1);

        self::assertSame('fallback', $flags->string('portal', 'fallback', $ctx));
        self::assertSame(3, $flags->int('count', 0, $ctx));
        self::assertSame(3.0, $flags->float('count', 0.0, $ctx));
        self::assertSame(9, $flags->int('missing', 9, $ctx));
        self::assertSame(EvaluationDetails::FLAG_NOT_FOUND, $flags->details('missing', $ctx)->errorCode);
        self::assertFalse($flags->isEnabled('broken', $ctx));
        $broken = $flags->details('broken', $ctx, 'd');
        self::assertSame('PARSE_ERROR', $broken->errorCode);
        self::assertSame('bad rule', $broken->errorMessage);
        self::assertSame(['portal' => true, 'count' => 3.0], $flags->all($ctx));
        $details = $flags->details('portal', $ctx);
        self::assertSame([true, 'on', 'STATIC', null], [$details->value, $details->variant, $details->reason, $details->errorCode]);
    }

    public function test_it_throws_in_strict_mode(): void
    {
        $this->transport->then(FakeTransport::down());
        $this->expectException(FlagdException::class);
        $this->expectExceptionMessage('unreachable');
        $this->client(strict: true)->isEnabled('portal', Context::company(1));
    }

    public function test_it_lists_the_other_flags_in_strict_mode_when_one_fails_for_the_context(): void
    {
        // A rollout by company fails for a context without one; the rest of the answer stands,
        // as all() documents, in strict mode too: a guest's page in development must not break.
        $this->transport->then(new Response(200, ['etag' => '"x"'], json_encode(['flags' => [
            ['key' => 'portal', 'value' => true, 'variant' => 'on', 'reason' => 'STATIC', 'metadata' => []],
            ['key' => 'rollout', 'errorCode' => 'TARGETING_KEY_MISSING', 'errorDetails' => 'no company'],
        ]])));
        $flags = $this->client(strict: true);

        self::assertSame(['portal' => true], $flags->all(Context::empty()));
        $details = $flags->allDetails(Context::empty());
        self::assertSame('TARGETING_KEY_MISSING', $details['rollout']->errorCode);
        $this->expectException(FlagdException::class);
        $flags->isEnabled('rollout', Context::empty());
    }

    public function test_it_never_throws_when_the_logger_throws(): void
    {
        $logger = new class () {
            public function warning(string $message, array $context = []): void
            {
                throw new \RuntimeException('log sink down');
            }
        };
        $this->transport->then(FakeTransport::down());
        $flags = new Client('http://x', 't', cache: $this->cache, transport: $this->transport, logger: $logger, clock: $this->clock);
        self::assertTrue($flags->isEnabled('portal', null, true));
    }

    public function test_it_uses_the_context_resolver_when_no_context_is_given(): void
    {
        $this->transport->then(FakeTransport::bulk(['portal' => true]));
        $flags = $this->client();
        $flags->setContextResolverInput(static fn (): array => [['company' => 42]]);
        $flags->resolveContextUsing(static fn (array $request): int => $request['company']);

        self::assertTrue($flags->isEnabled('portal'));
        self::assertSame(['context' => ['companyId' => 42]], json_decode($this->transport->requests[0]['body'], true));
    }

    public function test_it_resolves_the_context_again_once_the_user_is_known_in_the_same_request(): void
    {
        $this->transport->then(FakeTransport::bulk(['portal' => false]), FakeTransport::bulk(['portal' => true]));
        $flags = $this->client();
        $request = new \stdClass();
        $request->user = null;
        $flags->setContextResolverInput(static fn (): array => [$request]);
        $flags->resolveContextUsing(static fn (\stdClass $r): ?int => $r->user);

        // A global middleware asks before the session has loaded the user ...
        self::assertFalse($flags->isEnabled('portal'));
        // ... and the controller asks after, in the same request.
        $request->user = 42;
        self::assertTrue($flags->isEnabled('portal'));
        self::assertSame(['context' => ['companyId' => 42]], json_decode($this->transport->requests[1]['body'], true));
    }

    public function test_it_uses_an_empty_context_when_the_resolver_fails(): void
    {
        $this->transport->then(FakeTransport::bulk(['portal' => true]));
        $flags = $this->client();
        $flags->resolveContextUsing(static fn (): Context => throw new \RuntimeException('no user'));

        self::assertTrue($flags->isEnabled('portal'));
        self::assertSame('{"context":{}}', $this->transport->requests[0]['body']);
        self::assertStringContainsString('context resolver failed', $this->logger->messages());
    }

    public function test_it_uses_a_model_that_provides_its_context_from_the_resolver(): void
    {
        $this->transport->then(FakeTransport::bulk(['portal' => true]));
        $flags = $this->client();
        $user = new class () implements ProvidesFlagdContext {
            public function toFlagdContext(): Context
            {
                return Context::company(42, 'user-17');
            }
        };
        $flags->resolveContextUsing(static fn (): object => $user);

        self::assertTrue($flags->isEnabled('portal'));
        self::assertSame(['context' => ['companyId' => 42, 'targetingKey' => 'user-17']], json_decode($this->transport->requests[0]['body'], true));
        self::assertEquals(Context::company(42, 'user-17'), $flags->contextFrom($user));
    }

    /** @return iterable<string, array{mixed}> */
    public static function valuesThatAreNoContext(): iterable
    {
        yield 'an empty string' => [''];
        yield 'a float' => [42.0];
        yield 'a bool' => [true];
        yield 'an array' => [['companyId' => 42]];
        yield 'another object' => [new \ArrayObject()];
    }

    /** @dataProvider valuesThatAreNoContext */
    public function test_it_refuses_a_resolver_result_that_is_no_context_as_invalid_not_as_no_context(mixed $value): void
    {
        $flags = $this->client();
        $flags->resolveContextUsing(static fn (): mixed => $value);

        $details = $flags->details('portal', null, 'fallback');
        self::assertSame(['fallback', EvaluationDetails::INVALID_CONTEXT], [$details->value, $details->errorCode]);
        self::assertTrue($flags->isEnabled('portal', null, true));
        self::assertSame([], $flags->flagKeys());
        self::assertCount(0, $this->transport->requests, 'nothing is asked of flagd, for no company either');
        self::assertCount(1, $this->logger->records, 'once: ' . $this->logger->messages());
        self::assertStringContainsString('the context resolver returned ' . (is_object($value) ? $value::class : ''), $this->logger->messages());
        self::assertStringContainsString('not a context', $this->logger->messages());

        // Given directly (as `@flag` does), the same; still one warning per type.
        self::assertFalse($flags->isEnabled('portal', $flags->contextFrom($value, '@flag was given')));
        self::assertCount(1, $this->logger->records, $this->logger->messages());
    }

    public function test_it_throws_for_a_value_that_is_no_context_in_strict_mode(): void
    {
        $flags = $this->client(strict: true);
        $flags->resolveContextUsing(static fn (): float => 42.0);

        try {
            $flags->isEnabled('portal');
            self::fail('no exception');
        } catch (FlagdException $e) {
            self::assertStringContainsString('the context resolver returned float, not a context', $e->getMessage());
        }
        $this->expectException(FlagdException::class);
        $flags->contextFrom([], '@flag was given');
    }

    public function test_it_does_not_trip_the_breaker_on_a_refused_context(): void
    {
        $this->transport->then(
            new Response(400, [], '{"errorCode":"INVALID_CONTEXT","errorDetails":"too deep"}'),
            new Response(400, [], '{"errorCode":"INVALID_CONTEXT","errorDetails":"too deep"}'),
            new Response(400, [], '{"errorCode":"INVALID_CONTEXT","errorDetails":"too deep"}'),
            FakeTransport::bulk(['portal' => true]),
        );
        for ($i = 0; $i < 3; $i++) {
            self::assertFalse($this->client()->isEnabled('portal', Context::company($i)));
        }
        self::assertFalse($this->client()->breaker()->isOpen());
        self::assertTrue($this->client()->isEnabled('portal', Context::company(99)));
        self::assertStringContainsString('too deep', $this->logger->messages());
    }

    public function test_it_answers_defaults_for_a_context_json_cannot_carry_and_logs_it_once(): void
    {
        $flags = $this->client();
        $context = Context::company(42, null, ['score' => NAN]);

        self::assertTrue($flags->isEnabled('portal', $context, true));
        $details = $flags->details('theme', $context, 'classic');
        self::assertSame(['classic', EvaluationDetails::REASON_ERROR, EvaluationDetails::INVALID_CONTEXT], [$details->value, $details->reason, $details->errorCode]);
        self::assertSame([], $flags->all($context));
        self::assertCount(0, $this->transport->requests, 'nothing is sent');
        self::assertCount(1, $this->logger->records, $this->logger->messages());
        self::assertStringContainsString('cannot be sent as JSON', $this->logger->messages());

        $this->expectException(FlagdException::class);
        $this->client(strict: true)->isEnabled('portal', $context);
    }

    public function test_it_answers_defaults_for_an_attribute_that_throws_when_encoded(): void
    {
        // What an Eloquent model does under Model::preventAccessingMissingAttributes() when
        // it was loaded without a column its serialization reads.
        $user = new class () implements \JsonSerializable {
            public function jsonSerialize(): mixed
            {
                throw new \OutOfBoundsException('The attribute [plan] either does not exist or was not retrieved for model [App\Models\User].');
            }
        };
        $context = Context::company(42, null, ['user' => $user]);
        $flags = $this->client();

        self::assertTrue($flags->isEnabled('portal', $context, true));
        $details = $flags->details('theme', $context, 'classic');
        self::assertSame(['classic', EvaluationDetails::REASON_ERROR, EvaluationDetails::INVALID_CONTEXT], [$details->value, $details->reason, $details->errorCode]);
        self::assertStringContainsString('was not retrieved', (string) $details->errorMessage);
        self::assertCount(0, $this->transport->requests, 'nothing is sent');
        self::assertCount(1, $this->logger->records, $this->logger->messages());

        try {
            $this->client(strict: true)->isEnabled('portal', $context);
            self::fail('strict mode throws');
        } catch (FlagdException $e) {
            self::assertInstanceOf(\OutOfBoundsException::class, $e->getPrevious()?->getPrevious(), 'the cause is kept');
        }
    }

    public function test_it_sends_text_that_is_not_utf8_with_replacement_characters(): void
    {
        $this->transport->then(FakeTransport::bulk(['portal' => true]));
        $latin1 = "M\xfcller GmbH";

        self::assertTrue($this->client()->isEnabled('portal', Context::company(42, null, ['name' => $latin1])));
        $sent = json_decode($this->transport->requests[0]['body'], true);
        self::assertSame("M\u{FFFD}ller GmbH", $sent['context']['name']);
    }

    public function test_it_turns_an_evaluation_with_fields_of_the_wrong_type_into_that_flags_error(): void
    {
        $wrong = [
            'variant' => ['variant' => ['x' => 1]],
            'reason' => ['reason' => 7],
            'errorCode' => ['errorCode' => 404],
            'errorDetails' => ['errorCode' => 'GENERAL', 'errorDetails' => ['x']],
            'metadata' => ['metadata' => 'none'],
        ];
        $items = [['key' => 'theme', 'value' => 'dark', 'variant' => 'dark', 'reason' => 'STATIC', 'metadata' => []]];
        foreach ($wrong as $field => $fields) {
            $items[] = ['key' => "bad_{$field}", 'value' => true] + $fields;
        }
        $this->transport->then(new Response(200, ['etag' => '"e1"'], json_encode(['flags' => $items])));
        $flags = $this->client();

        foreach (array_keys($wrong) as $field) {
            $details = $flags->details("bad_{$field}", Context::company(42), 'default');
            self::assertSame(['default', EvaluationDetails::PARSE_ERROR], [$details->value, $details->errorCode], $field);
            self::assertStringContainsString("`{$field}`", (string) $details->errorMessage);
        }
        self::assertSame('dark', $flags->string('theme', 'classic', Context::company(42)), 'the other flags still answer');
    }

    public function test_it_falls_back_to_no_shared_cache_when_apcu_is_configured_but_off(): void
    {
        // The CLI's default (apc.enable_cli=0): artisan commands and queue workers.
        $script = sprintf(<<<'PHP'
            require %s;
            $logger = new Flagd\Tests\Support\MemoryLogger();
            $flags = Flagd\Client::fromConfig(['cache' => 'apcu', 'url' => 'http://127.0.0.1:9', 'breaker_threshold' => 2], $logger);
            foreach (range(1, 5) as $company) {
                $flags->isEnabled('portal', Flagd\Context::company($company));
            }
            echo json_encode(['requests' => $flags->requestCount(), 'open' => $flags->breaker()->isOpen(), 'log' => $logger->messages()]);
            PHP, var_export(dirname(__DIR__) . '/bootstrap.php', true));
        $output = [];
        exec(escapeshellarg(PHP_BINARY) . ' -d apc.enable_cli=0 -r ' . escapeshellarg($script) . ' 2>&1', $output, $code);
        $text = implode("\n", $output);
        self::assertSame(0, $code, $text);
        $result = json_decode($text, true);
        self::assertIsArray($result, $text);
        self::assertSame(2, $result['requests'], 'the breaker, kept in the process, stops the requests');
        self::assertTrue($result['open']);
        self::assertStringContainsString('APCu is not enabled', $result['log']);
    }

    public function test_it_reads_the_cache_setting_in_any_case_and_warns_once_of_an_unknown_one(): void
    {
        $cacheFor = function (mixed $setting): object {
            $client = Client::fromConfig(['cache' => $setting], $this->logger);

            return (new \ReflectionProperty(Client::class, 'cache'))->getValue($client);
        };
        $auto = $cacheFor('auto');
        self::assertInstanceOf(NullCache::class, $cacheFor('None'));
        self::assertInstanceOf(NullCache::class, $cacheFor(' NONE '));
        self::assertInstanceOf(NullCache::class, $cacheFor('null'));
        self::assertInstanceOf($auto::class, $cacheFor('APCU'));
        self::assertInstanceOf($auto::class, $cacheFor(''), 'empty: unset');
        self::assertStringNotContainsString('not one of', $this->logger->messages());

        foreach (['bogus', false] as $i => $unknown) {
            self::assertInstanceOf($auto::class, $cacheFor($unknown), 'an unknown value is `auto`');
            self::assertCount($i + 1, array_filter(array_column($this->logger->records, 1), static fn (string $m): bool => str_contains($m, 'not one of')), $this->logger->messages());
        }
        self::assertStringContainsString('flagd: cache (FLAGD_CACHE) is `bogus`, which is not one of `auto`, `apcu`, `none`; using `auto`', $this->logger->messages());
        self::assertStringContainsString('is `bool`', $this->logger->messages());
    }

    public function test_it_timestamps_a_transport_timeout_in_the_log(): void
    {
        $this->transport->then(new TransportException('Operation timed out (curl error 28)', true));
        self::assertSame('d', $this->client()->string('x', 'd', Context::company(1)));
        self::assertMatchesRegularExpression('/timed out .* after [0-9.]+ ms/', $this->logger->messages());
    }
}
