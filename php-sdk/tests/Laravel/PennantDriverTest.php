<?php

declare(strict_types=1);

namespace Flagd\Tests\Laravel;

use Flagd\Cache\ArrayCache;
use Flagd\Client;
use Flagd\Context;
use Flagd\Contracts\ProvidesFlagdContext;
use Flagd\FlagdException;
use Flagd\Laravel\Pennant\FlagdPennantDriver;
use Flagd\Laravel\Pennant\ReadOnlyException;
use Flagd\Tests\Support\FakeTransport;
use Flagd\Tests\Support\LaravelApp;
use Flagd\Tests\Support\Server;
use Flagd\Tests\Support\SharedCache;
use Illuminate\Auth\GenericUser;
use Illuminate\Database\Eloquent\Model;
use Laravel\Pennant\Contracts\DefinesFeaturesExternally;
use Laravel\Pennant\Contracts\Driver;
use PHPUnit\Framework\TestCase;

require_once dirname(__DIR__) . '/Support/pennant-contracts.php';

final class PennantDriverTest extends TestCase
{
    private FakeTransport $transport;
    private FlagdPennantDriver $driver;
    /** The client under realDriver(). */
    private Client $realFlags;

    protected function setUp(): void
    {
        $this->transport = new FakeTransport();
        $flags = new Client('http://flagd.test', 'token', cache: new ArrayCache(), transport: $this->transport);
        $this->driver = new FlagdPennantDriver($flags);
    }

    /** A driver over the real flagd-server, with its flags created once. */
    private function realDriver(): FlagdPennantDriver
    {
        static $seeded = false;
        $server = Server::shared();
        if (!$seeded) {
            // No off variant, nothing serves one: flagd answers without a value.
            $server->createEnabledFlag('pn_nooff', ['variants' => ['x' => 'X', 'y' => 'Y'], 'noOffVariant' => true]);
            // By company: a scope with no company nor user gets TARGETING_KEY_MISSING.
            $server->createEnabledFlag('pn_rollout');
            $server->admin('PUT', '/api/v1/flags/pn_rollout/environments/production/rollout', ['percentage' => 50]);
            $server->createEnabledFlag('pn_portal');
            $server->admin('POST', '/api/v1/flags/pn_portal/environments/production/allow', ['companies' => ['42']]);
            $seeded = true;
        }
        $this->realFlags = new Client($server->url, $server->evaluateToken(), cache: SharedCache::fresh(), connectTimeoutMs: 1000, timeoutMs: 2000);

        return new FlagdPennantDriver($this->realFlags);
    }

    /** Answers per company id found in the request body. */
    private function answerByCompany(int $times): void
    {
        for ($i = 0; $i < $times; $i++) {
            $this->transport->then(static function (string $url, array $headers, string $body) {
                $company = json_decode($body, true)['context']['companyId'] ?? null;

                return FakeTransport::bulk(['portal' => $company === 42, 'theme' => $company === 42 ? 'dark' : 'classic']);
            });
        }
    }

    public function test_it_implements_the_pennant_driver_interfaces(): void
    {
        self::assertInstanceOf(Driver::class, $this->driver);
        self::assertInstanceOf(DefinesFeaturesExternally::class, $this->driver);
    }

    public function test_it_maps_scopes_to_contexts(): void
    {
        $user = new class () {
            public int $id = 9;
            public int $company_id = 42;
        };
        $company = new class () {
            public function getKey(): int
            {
                return 42;
            }
        };
        $custom = new class () implements ProvidesFlagdContext {
            public function toFlagdContext(): Context
            {
                return Context::company(5, 'u', ['plan' => 'pro']);
            }
        };
        self::assertEquals(Context::company(42), FlagdPennantDriver::contextFor(42));
        self::assertEquals(Context::company('42'), FlagdPennantDriver::contextFor('42'));
        self::assertEquals(Context::company(42, '9'), FlagdPennantDriver::contextFor($user));
        self::assertEquals(Context::company(42), FlagdPennantDriver::contextFor($company));
        self::assertEquals(Context::company(5, 'u', ['plan' => 'pro']), FlagdPennantDriver::contextFor($custom));
        self::assertEquals(Context::empty(), FlagdPennantDriver::contextFor(null));
    }

    public function test_it_maps_an_eloquent_user_without_a_company_to_no_company(): void
    {
        LaravelApp::load();
        $model = static fn (array $attributes): Model => (new class () extends Model {
            protected $guarded = [];
        })->forceFill($attributes);

        self::assertEquals(new Context(null, '9'), FlagdPennantDriver::contextFor($model(['id' => 9, 'company_id' => null])), 'not company 9');
        self::assertEquals(Context::company(42, '9'), FlagdPennantDriver::contextFor($model(['id' => 9, 'company_id' => 42])));
        self::assertEquals(Context::company(42), FlagdPennantDriver::contextFor($model(['id' => 42, 'name' => 'Acme'])), 'a company');
        // A company id of a type flagd does not take is sent as given, for flagd to refuse,
        // not read as no company.
        $float = FlagdPennantDriver::contextFor($model(['id' => 9, 'company_id' => 42.0]));
        self::assertSame(['companyId' => 42.0, 'targetingKey' => '9'], $float->toArray());
        self::assertNull($float->companyId);
    }

    public function test_it_maps_a_generic_user_without_a_company_to_no_company(): void
    {
        LaravelApp::load();
        // What the `database` user provider returns: its __isset() is false for a null.
        self::assertEquals(new Context(null, '17'), FlagdPennantDriver::contextFor(new GenericUser(['id' => 17, 'company_id' => null])), 'not company 17');
        self::assertEquals(Context::company(42, '9'), FlagdPennantDriver::contextFor(new GenericUser(['id' => 9, 'company_id' => 42])));
        self::assertEquals(Context::company(42), FlagdPennantDriver::contextFor(new GenericUser(['id' => 42])), 'no such attribute: a company');

        $plain = new \stdClass();
        $plain->id = 17;
        $plain->company_id = null;
        self::assertEquals(new Context(null, '17'), FlagdPennantDriver::contextFor($plain));
    }

    public function test_it_does_not_give_a_generic_user_without_a_company_the_flags_of_the_company_with_its_id(): void
    {
        $driver = $this->realDriver();

        self::assertFalse($driver->get('pn_portal', new GenericUser(['id' => 42, 'company_id' => null])));
        self::assertTrue($driver->get('pn_portal', new GenericUser(['id' => 9, 'company_id' => 42])));
        self::assertTrue($driver->get('pn_portal', 42), 'the company itself');
    }

    public function test_it_gets_all_features_with_one_bulk_request_per_scope(): void
    {
        $this->answerByCompany(2);
        $result = $this->driver->getAll([
            'portal' => [42, 7, 42],
            'theme' => [7, 42],
        ]);

        self::assertSame(['portal' => [true, false, true], 'theme' => ['classic', 'dark']], $result);
        self::assertCount(2, $this->transport->requests);
        self::assertSame(['portal', 'theme'], $this->driver->definedFeaturesForScope(42));
    }

    public function test_it_is_read_only_and_points_to_flagctl(): void
    {
        foreach ([
            fn () => $this->driver->set('portal', 42, true),
            fn () => $this->driver->setForAllScopes('portal', true),
            fn () => $this->driver->delete('portal', 42),
            fn () => $this->driver->purge(null),
        ] as $write) {
            try {
                $write();
                self::fail('a write went through');
            } catch (ReadOnlyException $e) {
                self::assertStringContainsString('read-only', $e->getMessage());
                self::assertStringContainsString('flagctl', $e->getMessage());
            }
        }
    }

    public function test_it_uses_a_locally_defined_resolver_only_for_flags_flagd_does_not_know(): void
    {
        $this->answerByCompany(1);
        $this->driver->define('local_only', static fn (mixed $scope): string => 'local');
        $this->driver->define('portal', static fn (): string => 'never');

        self::assertSame('local', $this->driver->get('local_only', 42));
        self::assertTrue($this->driver->get('portal', 42));
        self::assertFalse($this->driver->get('unknown', 42));
    }

    public function test_it_uses_a_local_definition_in_strict_mode_instead_of_throwing_for_a_flag_flagd_does_not_know(): void
    {
        $this->transport->then(FakeTransport::bulk(['portal' => true]));
        $flags = new Client('http://flagd.test', 'token', cache: new ArrayCache(), transport: $this->transport, strict: true);
        $driver = new FlagdPennantDriver($flags);
        $driver->define('local_only', static fn (): string => 'local');
        $driver->define('portal', static fn (): string => 'never');

        self::assertSame('local', $driver->get('local_only', 42));
        self::assertTrue($driver->get('portal', 42));
        $this->expectException(FlagdException::class);
        $driver->get('unknown', 42);
    }

    public function test_it_answers_inactive_for_a_flag_flagd_serves_without_a_value_not_the_local_definition(): void
    {
        $driver = $this->realDriver();
        $driver->define('pn_nooff', static fn (): string => 'local');

        self::assertFalse($driver->get('pn_nooff', 42));
        self::assertSame(['pn_nooff' => [false]], $driver->getAll(['pn_nooff' => [42]]));
        self::assertContains('pn_nooff', $driver->definedFeaturesForScope(42));
    }

    public function test_it_keeps_a_flag_that_fails_for_a_scope_defined_and_inactive_not_locally_resolved(): void
    {
        $driver = $this->realDriver();
        $guest = null;
        self::assertSame('TARGETING_KEY_MISSING', $this->realFlags->details('pn_rollout', FlagdPennantDriver::contextFor($guest))->errorCode);

        self::assertContains('pn_rollout', $driver->definedFeaturesForScope($guest));
        self::assertContains('pn_nooff', $driver->definedFeaturesForScope($guest));
        self::assertContains('pn_rollout', $driver->defined());

        $driver->define('pn_rollout', static fn (): string => 'local');
        $driver->define('pn_local_only', static fn (): string => 'local');
        self::assertFalse($driver->get('pn_rollout', $guest), 'flagd knows it: not the local definition');
        self::assertSame('local', $driver->get('pn_local_only', $guest), 'flagd does not know it');
        self::assertContains('pn_local_only', $driver->definedFeaturesForScope($guest));
        self::assertSame(1, $this->realFlags->requestCount(), 'all from the one bulk answer');

        // A company it can bucket: flagd's value, the local definition still unused.
        self::assertIsBool($driver->get('pn_rollout', 42));
    }
}
