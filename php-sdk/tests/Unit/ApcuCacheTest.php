<?php

declare(strict_types=1);

namespace Flagd\Tests\Unit;

use Flagd\Cache\ApcuCache;
use Flagd\CircuitBreaker;
use Flagd\Tests\Support\Clock;
use PHPUnit\Framework\TestCase;

final class ApcuCacheTest extends TestCase
{
    private ApcuCache $cache;

    protected function setUp(): void
    {
        if (!ApcuCache::isAvailable()) {
            self::markTestSkipped('APCu is not enabled (php -d apc.enable_cli=1)');
        }
        $this->cache = new ApcuCache('flagd-unit:' . bin2hex(random_bytes(6)) . ':');
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
}
