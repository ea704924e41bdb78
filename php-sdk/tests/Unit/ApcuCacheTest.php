<?php

declare(strict_types=1);

namespace Flagd\Tests\Unit;

use Flagd\Cache\ApcuCache;
use Flagd\CircuitBreaker;
use Flagd\Client;
use Flagd\Context;
use Flagd\Http\Response;
use Flagd\Tests\Support\Clock;
use Flagd\Tests\Support\FakeTransport;
use PHPUnit\Framework\TestCase;

final class ApcuCacheTest extends TestCase
{
    private ApcuCache $cache;
    private string $prefix;

    protected function setUp(): void
    {
        if (!ApcuCache::isAvailable()) {
            self::markTestSkipped('APCu is not enabled (php -d apc.enable_cli=1)');
        }
        $this->prefix = 'flagd-unit:' . bin2hex(random_bytes(6)) . ':';
        $this->cache = new ApcuCache($this->prefix);
    }

    public function test_it_stores_adds_and_increments(): void
    {
        self::assertNull($this->cache->get('a'));
        $this->cache->set('a', ['flags' => ['x' => ['value' => true]]], 60);
        self::assertSame(['flags' => ['x' => ['value' => true]]], $this->cache->get('a'));
        self::assertTrue($this->cache->add('lock', 1, 60));
        self::assertFalse($this->cache->add('lock', 1, 60));
        self::assertSame(1, $this->cache->increment('n', 60));
        self::assertSame(2, $this->cache->increment('n', 60));
        $this->cache->delete('n');
        self::assertSame(1, $this->cache->increment('n', 60));
        self::assertTrue($this->cache->isShared());
    }

    public function test_it_shares_the_breaker_state_between_workers(): void
    {
        $clock = new Clock();
        $workerA = new CircuitBreaker($this->cache, 'svc', 2, 5.0, $clock);
        $workerB = new CircuitBreaker($this->cache, 'svc', 2, 5.0, $clock);

        $workerA->recordFailure();
        $workerB->recordFailure();
        self::assertFalse($workerA->allowsRequest());
        self::assertFalse($workerB->allowsRequest());

        $clock->advance(5.0);
        self::assertTrue($workerB->allowsRequest(), 'one probe');
        self::assertFalse($workerA->allowsRequest(), 'only one probe');
        $workerB->recordSuccess();
        self::assertTrue($workerA->allowsRequest());
    }

    public function test_it_keeps_no_entry_of_the_client_forever_when_stale_ttl_is_0(): void
    {
        $transport = (new FakeTransport())->then(
            FakeTransport::bulk(['portal' => true]),
            new Response(401, [], '{"error":{"code":"UNAUTHORIZED","message":"token revoked"}}'),
        );
        $flags = new Client('http://flagd.test', 'token', cache: $this->cache, transport: $transport, staleTtl: 0);
        $flags->isEnabled('portal', Context::company(42));
        $flags->isEnabled('portal', Context::company(7));

        $ttls = [];
        foreach (apcu_cache_info()['cache_list'] as $entry) {
            if (str_starts_with($entry['info'], $this->prefix)) {
                $ttls[substr($entry['info'], strlen($this->prefix))] = $entry['ttl'];
            }
        }
        // The answer for company 42 and the refusal marker, besides the breaker's count.
        $kept = array_filter(array_keys($ttls), static fn (string $key): bool => !str_starts_with($key, 'breaker:'));
        self::assertCount(2, $kept, (string) json_encode($ttls));
        self::assertContains(true, array_map(static fn (string $key): bool => str_ends_with($key, ':token-refused'), $kept));
        foreach ($ttls as $key => $ttl) {
            self::assertGreaterThan(0, $ttl, "{$key} expires");
        }
    }

    public function test_it_serves_an_answer_another_worker_is_revalidating_only_while_it_is_just_past_its_ttl(): void
    {
        $clock = new Clock();
        $transport = new FakeTransport();
        $worker = fn (): Client => new Client('http://flagd.test', 'token', cache: $this->cache, transport: $transport, staleTtl: 0, clock: $clock);
        $ctx = Context::company(42);
        $seen = [];
        // Another worker asks while this revalidation is in flight (holding the lock).
        $meanwhile = static function () use ($worker, $ctx, &$seen): Response {
            $other = $worker();
            $seen[] = [$other->isEnabled('portal', $ctx), $other->requestCount()];

            return FakeTransport::notModified();
        };
        $transport->then(FakeTransport::bulk(['portal' => true]), $meanwhile, $meanwhile, FakeTransport::bulk(['portal' => false], '"e2"'));
        self::assertTrue($worker()->isEnabled('portal', $ctx));

        // Just past the 1 s TTL: the other worker serves the answer rather than ask too.
        $clock->advance(1.2);
        self::assertTrue($worker()->isEnabled('portal', $ctx));
        // Long past it, with a stale TTL of 0, the answer is kept only for its ETag: the
        // other worker asks flagd itself rather than serve it. Its answer is newer than the
        // one the 304 confirms, so the revalidating worker serves it too.
        $clock->advance(30);
        self::assertFalse($worker()->isEnabled('portal', $ctx));

        self::assertSame([[true, 0], [false, 1]], $seen);
    }

    public function test_it_keeps_the_newer_answer_another_worker_stored_while_a_revalidation_was_in_flight(): void
    {
        $clock = new Clock();
        $transport = new FakeTransport();
        $worker = fn (): Client => new Client('http://flagd.test', 'token', cache: $this->cache, transport: $transport, staleTtl: 0, clock: $clock);
        $ctx = Context::company(42);
        // While this worker waits on its revalidation, flagd's flags change and another
        // worker (which may not serve an answer this old) stores the new answer; flagd's 304
        // to the first request was sent before the change.
        $meanwhile = static function () use ($worker, $ctx): Response {
            $worker()->isEnabled('portal', $ctx);

            return FakeTransport::notModified('"e1"');
        };
        $transport->then(
            FakeTransport::bulk(['portal' => true], '"e1"'),
            $meanwhile,
            FakeTransport::bulk(['portal' => false], '"e2"'),
        );
        self::assertTrue($worker()->isEnabled('portal', $ctx));
        $clock->advance(30);
        $revalidating = $worker();
        self::assertFalse($revalidating->isEnabled('portal', $ctx));
        self::assertSame('"e1"', $transport->requests[1]['headers']['If-None-Match']);

        $answers = [];
        foreach (apcu_cache_info()['cache_list'] as $entry) {
            $value = apcu_fetch($entry['info']);
            if (str_starts_with($entry['info'], $this->prefix) && is_array($value) && isset($value['flags'])) {
                $answers[] = [$value['etag'], $value['flags']['portal']['value']];
            }
        }
        self::assertSame([['"e2"', false]], $answers);

        // Inside the TTL a later request serves the newer answer from the cache.
        $clock->advance(0.5);
        $later = $worker();
        self::assertFalse($later->isEnabled('portal', $ctx));
        self::assertSame(0, $later->requestCount());
        self::assertCount(3, $transport->requests);
    }
}
