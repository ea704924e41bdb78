<?php

declare(strict_types=1);

// PHP overhead of the flagd client for one PHP request doing 20 flag checks for one
// company, in three situations: shared cache warm, cold (one bulk HTTP call on loopback),
// and circuit breaker open. Each PHP request is simulated by a new Client on the same cache.
//
//   php -d apc.enable_cli=1 bench/overhead.php [FLAGD_SERVER_BIN]
//
// Starts a flagd-server of its own (FLAGD_SERVER_BIN or a cargo build) with 20 flags.

require dirname(__DIR__) . '/tests/bootstrap.php';

use Flagd\Cache\ApcuCache;
use Flagd\Client;
use Flagd\Context;
use Flagd\Tests\Support\Server;

if (isset($argv[1])) {
    putenv('FLAGD_SERVER_BIN=' . $argv[1]);
}
if (!ApcuCache::isAvailable()) {
    fwrite(STDERR, "APCu is not enabled: run with -d apc.enable_cli=1\n");
    exit(1);
}

$server = Server::start();
try {
    $keys = [];
    for ($i = 0; $i < 20; $i++) {
        $keys[] = $key = "bench_flag_{$i}";
        $server->createEnabledFlag($key);
        $server->admin('PUT', "/api/v1/flags/{$key}/environments/production/rollout", ['percentage' => 50]);
    }
    $token = $server->evaluateToken();
    $context = Context::company(42, 'user-1');

    /** One PHP request: a new client, 20 checks. Returns microseconds. */
    $request = static function (ApcuCache $cache, string $url, float $ttl) use ($token, $keys, $context): float {
        $started = hrtime(true);
        $flags = new Client($url, $token, cacheTtl: $ttl, cache: $cache, connectTimeoutMs: 50, timeoutMs: 250);
        foreach ($keys as $key) {
            $flags->isEnabled($key, $context);
        }

        return (hrtime(true) - $started) / 1e3;
    };
    $median = static function (array $samples): float {
        sort($samples);

        return $samples[intdiv(count($samples), 2)];
    };
    $p99 = static function (array $samples): float {
        sort($samples);

        return $samples[(int) floor(count($samples) * 0.99)];
    };

    $runs = 2000;
    // Warm: the shared cache holds a fresh answer.
    $warmCache = new ApcuCache('bench-warm:' . getmypid() . ':');
    $request($warmCache, $server->url, 3600.0);
    $warm = [];
    for ($i = 0; $i < $runs; $i++) {
        $warm[] = $request($warmCache, $server->url, 3600.0);
    }

    // Cold: an empty cache every time, so one bulk HTTP call per request.
    $cold = [];
    for ($i = 0; $i < 300; $i++) {
        $cold[] = $request(new ApcuCache("bench-cold:{$i}:" . getmypid() . ':'), $server->url, 3600.0);
    }

    // Breaker open: nothing listens; after the threshold, no request touches the network.
    $downCache = new ApcuCache('bench-down:' . getmypid() . ':');
    $down = 'http://127.0.0.1:9';
    for ($i = 0; $i < 3; $i++) {
        $request($downCache, $down, 1.0);
    }
    $open = [];
    for ($i = 0; $i < $runs; $i++) {
        $open[] = $request($downCache, $down, 1.0);
    }

    printf("flagd PHP client overhead, 20 flag checks for one company per PHP request (PHP %s)\n", PHP_VERSION);
    printf("%-34s %10s %10s %10s\n", 'case', 'median µs', 'p99 µs', 'target µs');
    printf("%-34s %10.1f %10.1f %10s\n", 'shared cache warm (APCu)', $median($warm), $p99($warm), '< 100');
    printf("%-34s %10.1f %10.1f %10s\n", 'cold: one bulk HTTP call, loopback', $median($cold), $p99($cold), '< 3000');
    printf("%-34s %10.1f %10.1f %10s\n", 'circuit breaker open', $median($open), $p99($open), '< 100');
} finally {
    $server->stop();
}
