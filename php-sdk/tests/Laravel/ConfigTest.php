<?php

declare(strict_types=1);

namespace Flagd\Tests\Laravel;

use Flagd\Cache\NullCache;
use Flagd\Client;
use Flagd\Laravel\FlagdServiceProvider;
use Flagd\Tests\Support\LaravelApp;
use Flagd\Tests\Support\MemoryLogger;
use PHPUnit\Framework\TestCase;

/** How `config/flagd.php` reads the environment through Laravel's env(). */
final class ConfigTest extends TestCase
{
    /** @return iterable<string, array{string, bool}> */
    public static function switches(): iterable
    {
        foreach (['true', '1', 'on', 'yes', 'ON', 'Yes', '(true)'] as $value) {
            yield $value => [$value, true];
        }
        foreach (['false', '0', 'off', 'no', 'OFF', 'No', '', 'empty', 'null'] as $value) {
            yield $value === '' ? '(blank)' : $value => [$value, false];
        }
    }

    /** @dataProvider switches */
    public function test_it_reads_strict_and_log_as_switches_not_as_casts(string $value, bool $expected): void
    {
        $config = self::configWith(['FLAGD_STRICT' => $value, 'FLAGD_LOG' => $value]);

        self::assertSame($expected, $config['strict']);
        self::assertSame($expected, $config['log']);
    }

    public function test_it_reads_a_switch_that_is_neither_on_nor_off_as_its_default(): void
    {
        $config = self::configWith(['FLAGD_STRICT' => 'maybe', 'FLAGD_LOG' => 'maybe']);

        self::assertFalse($config['strict']);
        self::assertTrue($config['log']);
    }

    /** @return iterable<string, array{?string, int}> */
    public static function staleTtls(): iterable
    {
        yield 'unset' => [null, 86400];
        yield 'whole seconds' => ['60', 60];
        yield 'zero: never' => ['0', 0];
        yield 'a fraction rounds up, not to never' => ['0.5', 1];
        yield 'a fraction above one' => ['1.2', 2];
        yield 'negative: never' => ['-5', 0];
        yield 'not a number: the default, not 0' => ['abc', 86400];
        yield 'empty: the default' => ['', 86400];
        yield 'far too large: capped' => ['1e300', 1_000_000_000_000_000];
    }

    /** @dataProvider staleTtls */
    public function test_it_reads_the_stale_ttl_in_whole_seconds(?string $value, int $expected): void
    {
        self::assertSame($expected, self::configWith(['FLAGD_STALE_TTL' => $value])['stale_ttl']);
    }

    public function test_it_reads_flagd_cache_null_as_no_cache(): void
    {
        $config = self::configWith(['FLAGD_CACHE' => 'null']);
        self::assertSame('none', $config['cache']);
        $logger = new MemoryLogger();
        $client = Client::fromConfig($config, $logger);

        self::assertInstanceOf(NullCache::class, self::cacheOf($client));
        self::assertSame([], $logger->records);
        self::assertSame('auto', self::configWith(['FLAGD_CACHE' => null])['cache'], 'unset');
    }

    public function test_it_keeps_the_config_plain_values_for_config_cache(): void
    {
        $config = self::configWith(['FLAGD_STRICT' => 'off', 'FLAGD_STALE_TTL' => '0.5', 'FLAGD_CACHE' => 'null']);

        // config:cache writes var_export()ed config: no closures allowed.
        self::assertSame($config, eval('return ' . var_export($config, true) . ';'));
    }

    /**
     * The config file read with these variables set (null: unset), as Laravel reads it.
     *
     * @param array<string, ?string> $variables
     * @return array<string, mixed>
     */
    private static function configWith(array $variables): array
    {
        LaravelApp::load();
        foreach ($variables as $name => $value) {
            putenv($value === null ? $name : "{$name}={$value}");
        }
        try {
            return require FlagdServiceProvider::configPath();
        } finally {
            foreach (array_keys($variables) as $name) {
                putenv($name);
            }
        }
    }

    private static function cacheOf(Client $client): object
    {
        return (new \ReflectionProperty(Client::class, 'cache'))->getValue($client);
    }
}
