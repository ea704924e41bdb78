<?php

declare(strict_types=1);

namespace Flagd\Tests\Laravel;

use Flagd\Laravel\Console\CheckCommand;
use Flagd\Tests\Support\LaravelApp;
use Flagd\Tests\Support\Server;
use Illuminate\Console\Application as Artisan;
use Illuminate\Foundation\Application;
use PHPUnit\Framework\TestCase;
use Symfony\Component\Console\Input\ArrayInput;
use Symfony\Component\Console\Output\BufferedOutput;

final class CheckCommandTest extends TestCase
{
    public function test_it_prints_value_variant_and_reason(): void
    {
        $server = Server::shared();
        $server->createEnabledFlag('cmd_theme', ['variants' => ['classic' => 'classic', 'dark' => 'dark'], 'offVariant' => 'classic', 'onVariant' => 'dark']);
        $server->admin('POST', '/api/v1/flags/cmd_theme/environments/production/allow', ['companies' => ['42', '007']]);
        // Enabled with no off variant and nothing serving: flagd answers without a value.
        $server->createEnabledFlag('cmd_nooff', ['variants' => ['x' => 'X', 'y' => 'Y'], 'noOffVariant' => true]);
        $artisan = self::artisan();
        $output = new BufferedOutput();
        $code = $artisan->run(new ArrayInput(['command' => 'flagd:check', 'key' => 'cmd_theme', '--company' => '42']), $output);
        $text = $output->fetch();
        self::assertSame(0, $code, $text);
        self::assertStringContainsString('value:   "dark"', $text);
        self::assertStringContainsString('variant: dark', $text);
        self::assertStringContainsString('reason:  TARGETING_MATCH', $text);

        // A company id is passed as typed: `007` is on the list, 7 is not.
        $artisan->run(new ArrayInput(['command' => 'flagd:check', 'key' => 'cmd_theme', '--company' => '007']), $output);
        self::assertStringContainsString('value:   "dark"', $output->fetch());
        $artisan->run(new ArrayInput(['command' => 'flagd:check', 'key' => 'cmd_theme', '--company' => '7']), $output);
        self::assertStringContainsString('value:   "classic"', $output->fetch());

        // Served without a value: said so, not printed as a JSON null.
        $code = $artisan->run(new ArrayInput(['command' => 'flagd:check', 'key' => 'cmd_nooff', '--company' => '42']), $output);
        $text = $output->fetch();
        self::assertSame(0, $code, $text);
        self::assertStringContainsString("value:   none (flagd serves no value; the caller's default applies)", $text);
        self::assertStringContainsString('variant: -', $text);

        $code = $artisan->run(new ArrayInput(['command' => 'flagd:check', 'key' => 'cmd_nope', '--company' => '42']), $output);
        self::assertSame(1, $code);
        $text = $output->fetch();
        self::assertStringContainsString('error:   FLAG_NOT_FOUND: flag `cmd_nope` not found', $text);
        self::assertStringContainsString("value:   none (not evaluated, see the error below; the caller's default applies)", $text);
        self::assertStringNotContainsString('null', $text, 'the default the command did not pass is no value of the flag');
    }

    public function test_it_says_once_why_flagd_could_not_be_reached_and_exits_1(): void
    {
        // Port 9 (discard) refuses the connection.
        $app = LaravelApp::create(['url' => 'http://127.0.0.1:9', 'token' => 't', 'cache' => 'none', 'log' => false], __DIR__ . '/views');
        $artisan = self::artisanFor($app);
        $output = new BufferedOutput();

        $code = $artisan->run(new ArrayInput(['command' => 'flagd:check', 'key' => 'cmd_theme', '--company' => '42']), $output);
        $text = $output->fetch();

        self::assertSame(1, $code, $text);
        self::assertStringNotContainsString('value:   null', $text);
        self::assertSame(1, preg_match_all('/^error: .*$/m', $text, $errors), $text);
        self::assertStringStartsWith('error:   GENERAL: flagd unreachable at http://127.0.0.1:9/', $errors[0][0]);
        self::assertSame(1, preg_match_all('/\bafter\b/', $text), 'one timing: ' . $text);
        self::assertMatchesRegularExpression('/\(curl error 7\) after [0-9.]+ ms$/', $errors[0][0]);
    }

    public function test_it_evaluates_for_the_company_given_as_an_attribute(): void
    {
        $server = Server::shared();
        $server->createEnabledFlag('cmd_attr_portal');
        $server->admin('POST', '/api/v1/flags/cmd_attr_portal/environments/production/allow', ['companies' => ['5']]);
        $artisan = self::artisan();
        // An exception must fail the test, not become an exit code.
        $artisan->setCatchExceptions(false);
        $output = new BufferedOutput();

        $code = $artisan->run(new ArrayInput(['command' => 'flagd:check', 'key' => 'cmd_attr_portal', '--attr' => ['companyId=5', 'plan=pro']]), $output);
        $text = $output->fetch();
        self::assertSame(0, $code, $text);
        self::assertStringContainsString('value:   true', $text);
        self::assertStringContainsString('reason:  TARGETING_MATCH', $text);

        $artisan->run(new ArrayInput(['command' => 'flagd:check', 'key' => 'cmd_attr_portal', '--attr' => ['companyId=6']]), $output);
        self::assertStringContainsString('value:   false', $output->fetch(), 'another company');
    }

    /** Artisan with the check command, on an application asking the shared test server. */
    private static function artisan(): Artisan
    {
        return self::artisanFor(LaravelApp::onSharedServer(__DIR__ . '/views'));
    }

    private static function artisanFor(Application $app): Artisan
    {
        $artisan = new Artisan($app, $app['events'], 'test');
        $artisan->setAutoExit(false);
        $artisan->resolve(CheckCommand::class);

        return $artisan;
    }
}
