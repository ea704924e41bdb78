<?php

declare(strict_types=1);

namespace Flagd\Tests\Integration;

use Flagd\Client;
use Flagd\Context;
use Flagd\Contracts\Cache;
use Flagd\EvaluationDetails;
use Flagd\Tests\Support\MemoryLogger;
use Flagd\Tests\Support\Misbehaving;
use Flagd\Tests\Support\RecordingTransport;
use Flagd\Tests\Support\Server;
use Flagd\Tests\Support\SharedCache;
use PHPUnit\Framework\TestCase;

/** The client against the real flagd-server. */
final class ServerTest extends TestCase
{
    private static bool $seeded = false;
    private Server $server;
    private Cache $cache;

    protected function setUp(): void
    {
        $this->server = Server::shared();
        $this->cache = SharedCache::fresh();
        if (!self::$seeded) {
            self::seed($this->server);
            self::$seeded = true;
        }
    }

    private static function seed(Server $server): void
    {
        $server->createEnabledFlag('it_portal');
        $server->admin('POST', '/api/v1/flags/it_portal/environments/production/allow', ['companies' => ['42']]);

        $server->createEnabledFlag('it_theme', ['variants' => ['classic' => 'classic', 'dark' => 'dark'], 'offVariant' => 'classic', 'onVariant' => 'dark']);
        $server->admin('POST', '/api/v1/flags/it_theme/environments/production/allow', ['companies' => [42]]);

        $server->createEnabledFlag('it_seats', ['variants' => ['small' => 5, 'large' => 50], 'offVariant' => 'small', 'onVariant' => 'large']);
        $server->admin('POST', '/api/v1/flags/it_seats/environments/production/allow', ['companies' => ['42']]);

        $server->createEnabledFlag('it_discount', ['variants' => ['none' => 0.0, 'some' => 0.15], 'offVariant' => 'none', 'onVariant' => 'some']);
        $server->admin('POST', '/api/v1/flags/it_discount/environments/production/allow', ['companies' => ['42']]);

        $server->createEnabledFlag('it_limits', ['variants' => ['basic' => ['seats' => 5, 'sso' => false], 'pro' => ['seats' => 50, 'sso' => true]], 'offVariant' => 'basic', 'onVariant' => 'pro']);
        $server->admin('POST', '/api/v1/flags/it_limits/environments/production/allow', ['companies' => ['42']]);

        // Targeting on attributes, and a deny list beating the rule.
        $server->createEnabledFlag('it_targeted');
        $headers = [];
        $server->admin('GET', '/api/v1/flags/it_targeted/environments/production', null, [], $headers);
        $server->admin('PUT', '/api/v1/flags/it_targeted/environments/production', [
            'state' => 'ENABLED',
            'deny' => ['13'],
            'rules' => [['conditions' => [['attribute' => 'plan', 'op' => 'in', 'value' => ['pro', 'enterprise']]], 'serve' => ['variant' => 'on']]],
        ], ['If-Match' => $headers['etag']]);

        $server->createEnabledFlag('it_rollout');
        $server->admin('PUT', '/api/v1/flags/it_rollout/environments/production/rollout', ['percentage' => 50]);

        // Created, never enabled.
        $server->admin('POST', '/api/v1/flags', ['key' => 'it_disabled']);

        // No off variant and nothing that serves one: flagd answers without a value, enabled
        // (reason DEFAULT) or disabled (reason DISABLED).
        $server->createEnabledFlag('it_nooff', ['variants' => ['x' => 'X', 'y' => 'Y'], 'noOffVariant' => true]);
        $server->admin('POST', '/api/v1/flags', ['key' => 'it_nooff_disabled', 'variants' => ['x' => 'X', 'y' => 'Y'], 'noOffVariant' => true]);
    }

    private function client(float $ttl = 1.0, ?RecordingTransport $transport = null): Client
    {
        return new Client(
            url: $this->server->url,
            token: $this->server->evaluateToken(),
            cacheTtl: $ttl,
            // Generous for a debug build on a shared machine; the failure tests check the defaults.
            connectTimeoutMs: 1000,
            timeoutMs: 2000,
            cache: $this->cache,
            transport: $transport,
        );
    }

    public function test_it_evaluates_each_flag_type(): void
    {
        $flags = $this->client();
        $pilot = Context::company(42);
        $other = Context::company(7);

        self::assertTrue($flags->isEnabled('it_portal', $pilot));
        self::assertFalse($flags->isEnabled('it_portal', $other));
        self::assertSame('dark', $flags->string('it_theme', 'x', $pilot));
        self::assertSame('classic', $flags->string('it_theme', 'x', $other));
        self::assertSame(50, $flags->int('it_seats', 0, $pilot));
        self::assertSame(5, $flags->int('it_seats', 0, $other));
        self::assertSame(0.15, $flags->float('it_discount', 1.0, $pilot));
        self::assertSame(0.0, $flags->float('it_discount', 1.0, $other));
        self::assertSame(['seats' => 50, 'sso' => true], $flags->object('it_limits', [], $pilot));
        self::assertSame(['seats' => 5, 'sso' => false], $flags->object('it_limits', [], $other));

        $details = $flags->details('it_theme', $pilot);
        self::assertSame(['dark', 'dark', 'TARGETING_MATCH', null], [$details->value, $details->variant, $details->reason, $details->errorCode]);
        $disabled = $flags->details('it_disabled', $pilot);
        self::assertSame([false, 'off', 'DISABLED'], [$disabled->value, $disabled->variant, $disabled->reason]);
        self::assertSame('FLAG_NOT_FOUND', $flags->details('it_nope', $pilot)->errorCode);
        self::assertSame('fallback', $flags->string('it_seats', 'fallback', $pilot), 'type mismatch gives the default');

        $all = $flags->all($pilot);
        self::assertTrue($all['it_portal']);
        self::assertSame('dark', $all['it_theme']);
        // Two contexts, however many checks: two requests.
        self::assertSame(2, $flags->requestCount());
    }

    public function test_it_serves_the_callers_default_without_an_error_when_flagd_answers_no_value(): void
    {
        $logger = new MemoryLogger();
        $flags = new Client($this->server->url, $this->server->evaluateToken(), cache: $this->cache, logger: $logger, connectTimeoutMs: 1000, timeoutMs: 2000);
        $ctx = Context::company(42);

        self::assertSame('mine', $flags->string('it_nooff', 'mine', $ctx));
        $details = $flags->details('it_nooff', $ctx, 'mine');
        self::assertSame(
            ['mine', null, 'DEFAULT', null, null],
            [$details->value, $details->variant, $details->reason, $details->errorCode, $details->errorMessage],
        );
        self::assertFalse($details->isError());
        $disabled = $flags->details('it_nooff_disabled', $ctx, 'mine');
        self::assertSame(['mine', 'DISABLED', null], [$disabled->value, $disabled->reason, $disabled->errorCode]);

        // Listed as known, with null: `$all[$key] ?? $default` gives the caller's default.
        $all = $flags->all($ctx);
        self::assertArrayHasKey('it_nooff', $all);
        self::assertNull($all['it_nooff']);
        self::assertArrayHasKey('it_nooff_disabled', $all);
        self::assertSame([], $logger->records, 'nothing to log: it is not a failure');

        $strict = new Client($this->server->url, $this->server->evaluateToken(), cache: SharedCache::fresh(), strict: true, connectTimeoutMs: 1000, timeoutMs: 2000);
        self::assertSame('mine', $strict->string('it_nooff', 'mine', $ctx), 'strict mode does not throw');
        self::assertSame('DISABLED', $strict->details('it_nooff_disabled', $ctx)->reason);
    }

    public function test_it_sends_attributes_for_targeting(): void
    {
        $flags = $this->client();
        self::assertTrue($flags->isEnabled('it_targeted', Context::company(5, 'u1', ['plan' => 'pro'])));
        self::assertFalse($flags->isEnabled('it_targeted', Context::company(5, 'u1', ['plan' => 'free'])));
        self::assertFalse($flags->isEnabled('it_targeted', Context::company(13, 'u1', ['plan' => 'pro'])), 'deny list');
        self::assertFalse($flags->isEnabled('it_targeted', Context::company(5)), 'missing attribute');
    }

    public function test_it_evaluates_for_the_company_and_user_given_as_attributes(): void
    {
        $flags = $this->client();
        // A model's only([...]) handed over as attributes.
        $ctx = Context::empty()->withAttributes(['companyId' => 5, 'targetingKey' => 'u1', 'plan' => 'pro']);
        self::assertTrue($flags->isEnabled('it_targeted', $ctx));
        self::assertFalse($flags->isEnabled('it_targeted', $ctx->with('companyId', 13)), 'deny list: company 13');
        self::assertTrue($flags->isEnabled('it_portal', Context::empty()->with('companyId', '42')));
    }

    public function test_it_serves_defaults_with_invalid_context_for_a_company_or_targeting_key_of_the_wrong_type(): void
    {
        $logger = new MemoryLogger();
        foreach ([
            'companyId' => [[42], 42.0, true],
            'targetingKey' => [17, ['u1'], false],
        ] as $field => $values) {
            foreach ($values as $value) {
                $label = $field . ' ' . json_encode($value, JSON_PRESERVE_ZERO_FRACTION);
                // 42 is on it_portal's allow list: a guess at the company would turn it on.
                $ctx = Context::company(42)->with($field, $value);
                $flags = new Client($this->server->url, $this->server->evaluateToken(), cache: $this->cache, logger: $logger, connectTimeoutMs: 1000, timeoutMs: 2000);

                $details = $flags->details('it_portal', $ctx, 'default');
                self::assertSame(['default', EvaluationDetails::REASON_ERROR, EvaluationDetails::INVALID_CONTEXT], [$details->value, $details->reason, $details->errorCode], $label);
                self::assertStringContainsString('(400)', (string) $details->errorMessage, $label);
                self::assertStringContainsString($field, (string) $details->errorMessage, $label);
                self::assertSame(1, $flags->requestCount(), $label);
                self::assertFalse($flags->breaker()->isOpen(), $label);
            }
        }
    }

    public function test_it_rolls_out_by_company_the_same_way_as_single_evaluation(): void
    {
        $flags = $this->client();
        $on = [];
        for ($company = 1; $company <= 60; $company++) {
            $details = $flags->details('it_rollout', Context::company($company, 'user-' . $company));
            self::assertSame('SPLIT', $details->reason);
            // Every user of a company gets the company's answer.
            self::assertSame($details->value, $flags->isEnabled('it_rollout', Context::company($company, 'another-user')));
            self::assertSame($this->single('it_rollout', ['companyId' => $company])['value'], $details->value);
            if ($details->value === true) {
                $on[] = $company;
            }
        }
        self::assertGreaterThan(10, count($on));
        self::assertLessThan(50, count($on));
    }

    public function test_it_revalidates_with_the_etag_and_gets_304(): void
    {
        $transport = new RecordingTransport();
        $ctx = Context::company(42);
        self::assertTrue($this->client(0.0, $transport)->isEnabled('it_portal', $ctx));
        self::assertTrue($this->client(0.0, $transport)->isEnabled('it_portal', $ctx));

        self::assertSame([200, 304], array_column($transport->calls, 'status'));
        self::assertArrayHasKey('If-None-Match', $transport->calls[1]['headers']);
    }

    public function test_it_sees_a_flag_disabled_with_the_admin_api_within_the_ttl(): void
    {
        $this->server->createEnabledFlag('it_kill');
        $this->server->admin('PUT', '/api/v1/flags/it_kill/environments/production/rollout', ['percentage' => 100]);
        $ttl = 0.3;
        $ctx = Context::company(77);
        self::assertTrue($this->client($ttl)->isEnabled('it_kill', $ctx));

        $this->server->admin('POST', '/api/v1/flags/it_kill/environments/production/disable', ['reason' => 'incident']);
        $disabledAt = microtime(true);
        // The first request after the TTL has passed must see it off.
        while (microtime(true) < $disabledAt + $ttl) {
            usleep(10_000);
        }
        $flags = $this->client($ttl);
        self::assertFalse($flags->isEnabled('it_kill', $ctx));
        self::assertSame('DISABLED', $flags->details('it_kill', $ctx)->reason);
    }

    public function test_it_reports_a_wrong_token_and_returns_defaults(): void
    {
        $logger = new \Flagd\Tests\Support\MemoryLogger();
        $flags = new Client($this->server->url, 'fdt_not_a_token', cache: $this->cache, logger: $logger, connectTimeoutMs: 1000, timeoutMs: 2000);
        self::assertTrue($flags->isEnabled('it_portal', Context::company(42), true));
        self::assertStringContainsString('401', $logger->messages());

        $read = $this->server->admin('POST', '/api/v1/tokens', ['name' => 'reader', 'role' => 'read'])['value'];
        $logger = new \Flagd\Tests\Support\MemoryLogger();
        $flags = new Client($this->server->url, $read, cache: $this->cache, logger: $logger, connectTimeoutMs: 1000, timeoutMs: 2000);
        self::assertSame('d', $flags->string('it_theme', 'd', Context::company(42)));
        self::assertStringContainsString('403', $logger->messages());
    }

    public function test_it_serves_defaults_not_the_last_known_values_once_its_token_is_revoked(): void
    {
        $created = $this->server->admin('POST', '/api/v1/tokens', ['name' => 'revoked soon', 'role' => 'evaluate', 'environment' => 'production']);
        $logger = new MemoryLogger();
        // One client per PHP request, sharing the cache; TTL 0: every request revalidates.
        $request = fn (): Client => new Client(
            url: $this->server->url,
            token: $created['value'],
            cacheTtl: 0.0,
            connectTimeoutMs: 1000,
            timeoutMs: 2000,
            cache: $this->cache,
            logger: $logger,
            breakerThreshold: 3,
            breakerCooldown: 30.0,
        );
        $user = Context::company(42, 'user-1');
        $colleague = Context::company(42, 'user-2');
        $warm = $request();
        self::assertTrue($warm->isEnabled('it_portal', $user));
        self::assertSame('dark', $warm->string('it_theme', 'classic', $colleague));

        $this->server->admin('DELETE', '/api/v1/tokens/' . $created['id']);

        for ($attempt = 0; $attempt < 3; $attempt++) {
            $flags = $request();
            $details = $flags->details('it_portal', $user, false);
            self::assertSame(
                [false, EvaluationDetails::REASON_ERROR, EvaluationDetails::GENERAL],
                [$details->value, $details->reason, $details->errorCode],
                "request {$attempt}",
            );
            self::assertStringContainsString('401', (string) $details->errorMessage);
            self::assertSame('classic', $flags->string('it_theme', 'classic', $colleague), "request {$attempt}");
        }
        // Two refusals per request: the breaker opened during the second, and while it is
        // open the cached answers are not served either.
        self::assertSame(0, $flags->requestCount());
        self::assertTrue($flags->breaker()->isOpen());
        self::assertStringContainsString('FLAGD_TOKEN', (string) $flags->details('it_theme', $colleague)->errorMessage);
        self::assertSame('error', $logger->records[0][0]);
        self::assertStringContainsString('serving defaults', $logger->records[0][1]);
    }

    public function test_it_reads_object_flags_nested_as_deep_as_the_server_stores_them(): void
    {
        // The server takes request bodies nested 64 deep: the variant sits two levels down.
        $deep = 'leaf';
        for ($level = 0; $level < 62; $level++) {
            $deep = ['n' => $deep];
        }
        $this->server->createEnabledFlag('it_deep', ['variants' => ['flat' => ['n' => 'leaf'], 'deep' => $deep], 'offVariant' => 'flat', 'onVariant' => 'deep']);
        $this->server->admin('POST', '/api/v1/flags/it_deep/environments/production/allow', ['companies' => ['42']]);

        $flags = $this->client();
        self::assertSame($deep, $flags->object('it_deep', [], Context::company(42)));
        self::assertTrue($flags->isEnabled('it_portal', Context::company(42)), 'and every other flag of the answer');
    }

    public function test_it_keeps_the_breaker_closed_when_the_server_refuses_a_context_as_too_large(): void
    {
        $logger = new MemoryLogger();
        $huge = Context::company(7, null, ['notes' => str_repeat('x', 1_100_000)]);
        for ($request = 0; $request < 4; $request++) {
            $flags = new Client($this->server->url, $this->server->evaluateToken(), cache: $this->cache, logger: $logger, connectTimeoutMs: 1000, timeoutMs: 2000);
            $details = $flags->details('it_portal', $huge, false);
            self::assertSame([false, EvaluationDetails::INVALID_CONTEXT], [$details->value, $details->errorCode], "request {$request}");
            self::assertSame(1, $flags->requestCount(), "request {$request} was still sent");
        }
        self::assertStringContainsString('(413)', $logger->messages());

        // Every other context of the app is served as before.
        $flags = $this->client();
        self::assertFalse($flags->breaker()->isOpen());
        self::assertTrue($flags->isEnabled('it_portal', Context::company(42)));
    }

    public function test_it_does_not_mistake_another_server_on_its_port_for_the_flagd_it_started(): void
    {
        // `php -S` holds the port and answers `/healthz` there: the flagd-server started on
        // it cannot listen, and the support must say so rather than test against `php -S`.
        $port = (int) parse_url(Misbehaving::shared()->url, PHP_URL_PORT);
        $this->expectException(\RuntimeException::class);
        $this->expectExceptionMessageMatches('/flagd-server exited:.*in use/s');
        Server::startOn($port);
    }

    /** @param array<string, mixed> $context @return array<string, mixed> */
    private function single(string $key, array $context): array
    {
        $ch = curl_init($this->server->url . '/ofrep/v1/evaluate/flags/' . $key);
        curl_setopt_array($ch, [
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => json_encode(['context' => $context]),
            CURLOPT_HTTPHEADER => ['X-API-Key: ' . $this->server->evaluateToken(), 'Content-Type: application/json'],
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT => 5,
        ]);

        return json_decode((string) curl_exec($ch), true);
    }
}
