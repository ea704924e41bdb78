<?php

declare(strict_types=1);

namespace Flagd\Tests\Integration;

use Flagd\Client;
use Flagd\Context;
use Flagd\EvaluationDetails;
use Flagd\Tests\Support\MemoryLogger;
use Flagd\Tests\Support\Server;
use Flagd\Tests\Support\TlsProxy;
use PHPUnit\Framework\TestCase;

/**
 * The real flagd-server behind nginx serving https:// with a certificate a private
 * authority signed: `ca_file` (FLAGD_CA_CERT) is what lets the client trust it.
 */
final class TlsProxyTest extends TestCase
{
    private const FLAG = 'it_tls_portal';

    private static bool $seeded = false;
    private Server $server;
    private ?TlsProxy $proxy = null;
    private MemoryLogger $logger;

    protected function setUp(): void
    {
        $this->server = Server::shared();
        if (!self::$seeded) {
            $this->server->createEnabledFlag(self::FLAG);
            $this->server->admin('POST', '/api/v1/flags/' . self::FLAG . '/environments/production/allow', ['companies' => ['42']]);
            self::$seeded = true;
        }
        $this->proxy = TlsProxy::start("127.0.0.1:{$this->server->port}");
        $this->logger = new MemoryLogger();
    }

    protected function tearDown(): void
    {
        // Runs when the test failed too: no nginx outlives its test.
        $this->proxy?->stop();
        $this->proxy = null;
    }

    /** The flag checked through the proxy, with false as the caller's default (flagd serves true). */
    private function checkThroughProxy(string $caFile): EvaluationDetails
    {
        $flags = Client::fromConfig([
            'url' => $this->proxy->url,
            'token' => $this->server->evaluateToken(),
            'ca_file' => $caFile,
            'cache' => 'none',
            // A TLS handshake on a shared machine: generous, the failure tests check the defaults.
            'connect_timeout_ms' => 2000,
            'timeout_ms' => 4000,
        ], $this->logger);

        return $flags->details(self::FLAG, Context::company(42), false);
    }

    public function test_it_reaches_flagd_behind_a_proxy_signed_by_the_ca_in_ca_file(): void
    {
        $details = $this->checkThroughProxy($this->proxy->caFile);

        self::assertSame(
            [true, 'on', 'TARGETING_MATCH', null, null],
            [$details->value, $details->variant, $details->reason, $details->errorCode, $details->errorMessage],
            $this->logger->messages() . "\n" . $this->proxy->log(),
        );
        self::assertSame([], $this->logger->records);
    }

    public function test_it_serves_the_default_and_names_the_certificate_problem_without_ca_file(): void
    {
        // '' is what config/flagd.php reads when FLAGD_CA_CERT is unset: curl's default bundle.
        $details = $this->checkThroughProxy('');

        self::assertSame(
            [false, EvaluationDetails::REASON_ERROR, EvaluationDetails::GENERAL],
            [$details->value, $details->reason, $details->errorCode],
        );
        self::assertMatchesRegularExpression('/certificate|SSL/i', (string) $details->errorMessage);
        self::assertStringContainsString((string) $details->errorMessage, $this->logger->messages());
    }

    public function test_it_serves_the_default_without_throwing_when_ca_file_is_missing(): void
    {
        $missing = $this->proxy->caFile . '.missing';
        $details = $this->checkThroughProxy($missing);

        self::assertSame([false, EvaluationDetails::REASON_ERROR], [$details->value, $details->reason]);
        // curl names the file it could not read.
        self::assertStringContainsString($missing, (string) $details->errorMessage);
        self::assertStringContainsString($missing, $this->logger->messages());
    }

    public function test_it_serves_the_default_without_throwing_when_ca_file_is_not_pem(): void
    {
        $notPem = dirname($this->proxy->caFile) . '/not-a-certificate.txt';
        file_put_contents($notPem, "not a certificate\n");
        $details = $this->checkThroughProxy($notPem);

        self::assertSame([false, EvaluationDetails::REASON_ERROR], [$details->value, $details->reason]);
        self::assertMatchesRegularExpression('/certificate/i', (string) $details->errorMessage);
        self::assertStringContainsString($notPem, (string) $details->errorMessage);
        self::assertStringContainsString((string) $details->errorMessage, $this->logger->messages());
    }
}
