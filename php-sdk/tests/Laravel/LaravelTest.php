<?php

declare(strict_types=1);

namespace Flagd\Tests\Laravel;

use Flagd\Client;
use Flagd\Context;
use Flagd\Contracts\ProvidesFlagdContext;
use Flagd\EvaluationDetails;
use Flagd\Laravel\Facades\Flagd;
use Flagd\Laravel\FlagdServiceProvider;
use Flagd\Laravel\Middleware\EnsureFlagIsOn;
use Flagd\Laravel\Pennant\FlagdPennantDriver;
use Flagd\Tests\Support\FlagCheckingJob;
use Flagd\Tests\Support\LaravelApp;
use Flagd\Tests\Support\MemoryLogger;
use Flagd\Tests\Support\MemoryQueue;
use Flagd\Tests\Support\Server;
use Illuminate\Auth\GenericUser;
use Illuminate\Foundation\Application;
use Illuminate\Http\Request;
use Illuminate\Queue\Connectors\ConnectorInterface;
use Illuminate\Queue\QueueServiceProvider;
use Illuminate\Queue\WorkerOptions;
use Laravel\Pennant\FeatureManager;
use PHPUnit\Framework\TestCase;

/** The Laravel glue in a real application: container, router, middleware, Blade. */
final class LaravelTest extends TestCase
{
    private static bool $seeded = false;
    private Application $app;

    protected function setUp(): void
    {
        $server = Server::shared();
        if (!self::$seeded) {
            $server->createEnabledFlag('lv_portal');
            $server->admin('POST', '/api/v1/flags/lv_portal/environments/production/allow', ['companies' => ['42']]);
            self::$seeded = true;
        }
        $this->app = self::createApp();
    }

    private static function createApp(): Application
    {
        return LaravelApp::onSharedServer(__DIR__ . '/views');
    }

    public function test_it_merges_the_config_and_binds_the_client_as_a_singleton(): void
    {
        $config = $this->app['config'];
        self::assertSame(2000, $config->get('flagd.timeout_ms'), 'the app value wins');
        self::assertSame(1.0, $config->get('flagd.cache_ttl'), 'the package default fills the gap');
        self::assertSame(3, $config->get('flagd.breaker_threshold'));
        self::assertInstanceOf(Client::class, $this->app->make(Client::class));
        self::assertSame($this->app->make(Client::class), $this->app->make('flagd'));
        self::assertSame($this->app->make(Client::class), Flagd::getFacadeRoot());
        self::assertSame(EnsureFlagIsOn::class, $this->app['router']->getMiddleware()['flag'] ?? null);
        self::assertContains(FlagdServiceProvider::configPath(), array_keys(FlagdServiceProvider::pathsToPublish(FlagdServiceProvider::class, 'flagd-config')));
    }

    public function test_it_reads_the_config_from_the_environment(): void
    {
        putenv('FLAGD_TIMEOUT_MS=123');
        putenv('FLAGD_CACHE_TTL=0.5');
        try {
            $config = require FlagdServiceProvider::configPath();
        } finally {
            putenv('FLAGD_TIMEOUT_MS');
            putenv('FLAGD_CACHE_TTL');
        }
        self::assertSame(123, $config['timeout_ms']);
        self::assertSame(0.5, $config['cache_ttl']);
        self::assertSame(50, $config['connect_timeout_ms']);
        // config:cache writes var_export()ed config: no closures allowed.
        self::assertSame($config, eval('return ' . var_export($config, true) . ';'));
    }

    public function test_it_answers_404_or_200_through_the_flag_middleware(): void
    {
        $router = $this->app['router'];
        $router->get('/portal', static fn (): string => 'portal')->middleware('flag:lv_portal');
        Flagd::resolveContextUsing(static fn (Request $request): Context => Context::company((int) $request->header('X-Company')));

        $pilot = $this->dispatch(Request::create('/portal', 'GET', server: ['HTTP_X_COMPANY' => '42']));
        self::assertSame(200, $pilot->getStatusCode());
        self::assertSame('portal', $pilot->getContent());

        $other = $this->dispatch(Request::create('/portal', 'GET', server: ['HTTP_X_COMPANY' => '7']));
        self::assertSame(404, $other->getStatusCode());
    }

    public function test_it_renders_both_branches_of_the_blade_directive(): void
    {
        Flagd::resolveContextUsing(static fn (): int => 42);
        $html = $this->app['view']->make('portal')->render();
        self::assertStringContainsString('new portal', $html);
        self::assertStringNotContainsString('old portal', $html);

        Flagd::resolveContextUsing(static fn (): int => 7);
        $html = $this->app['view']->make('portal')->render();
        self::assertStringContainsString('old portal', $html);
        self::assertStringNotContainsString('new portal', $html);
        self::assertStringContainsString('pilot sees it', $html, 'an explicit company as second argument');
    }

    public function test_it_renders_the_blade_directive_for_a_model_that_provides_its_context_and_refuses_what_is_no_context(): void
    {
        $logger = new MemoryLogger();
        $app = LaravelApp::onSharedServer(__DIR__ . '/views', $logger);
        $pilot = new class () implements ProvidesFlagdContext {
            public function toFlagdContext(): Context
            {
                return Context::company(42, 'user-17');
            }
        };
        $render = static fn (mixed $context): string => trim($app['view']->make('explicit', ['context' => $context])->render());

        self::assertSame('<p>on</p>', $render($pilot));
        self::assertSame('<p>on</p>', $render(42));
        foreach (['', 42.0, true, ['companyId' => 42], new \ArrayObject()] as $value) {
            self::assertSame('<p>off</p>', $render($value), get_debug_type($value) . ' is not company 42 nor no company');
        }
        self::assertSame('<p>off</p>', $render(42.0), 'again: logged once');

        $warnings = array_column($logger->records, 1);
        self::assertCount(5, $warnings, $logger->messages());
        foreach (['an empty string', 'float', 'bool', 'array', 'ArrayObject'] as $i => $type) {
            self::assertStringStartsWith("flagd: @flag was given {$type}, not a context", $warnings[$i]);
            self::assertStringContainsString('INVALID_CONTEXT', $warnings[$i]);
        }
        self::assertSame(2, $app->make(Client::class)->requestCount(), 'nothing asked for what is no context');
    }

    public function test_it_runs_the_readme_context_resolver_for_every_type_of_company_id(): void
    {
        $logger = new MemoryLogger();
        $app = LaravelApp::onSharedServer(__DIR__ . '/views', $logger);
        self::evalReadmeResolver();
        $flags = $app->make(Client::class);
        $check = static function (mixed $companyId) use ($app, $flags): array {
            $request = Request::create('/portal');
            $request->setUserResolver(static fn (): GenericUser => new GenericUser(['id' => 17, 'company_id' => $companyId]));
            $app->instance('request', $request);

            return [$flags->currentContext(), $flags->details('lv_portal', null, false)];
        };

        [$context, $details] = $check(null);
        self::assertSame(['targetingKey' => '17'], $context->toArray(), 'no company');
        self::assertFalse($details->value);
        self::assertNotSame(EvaluationDetails::INVALID_CONTEXT, $details->errorCode);
        foreach ([42, '42'] as $companyId) {
            [$context, $details] = $check($companyId);
            self::assertSame(['companyId' => $companyId, 'targetingKey' => '17'], $context->toArray());
            self::assertTrue($details->value, 'company 42 is allowed');
        }
        foreach ([42.0, true] as $companyId) {
            [$context, $details] = $check($companyId);
            self::assertNull($context->companyId, 'not a company guessed from ' . var_export($companyId, true));
            self::assertSame([false, EvaluationDetails::INVALID_CONTEXT], [$details->value, $details->errorCode], var_export($companyId, true));
        }
        self::assertStringNotContainsString('resolver failed', $logger->messages(), 'the resolver threw');
        self::assertCount(2, $logger->records, 'flagd refusing the float and the bool: ' . $logger->messages());
    }

    /**
     * Runs the README's resolver as written, in code without `declare(strict_types=1)` (eval
     * does not inherit this file's), as in a Laravel application's own files.
     */
    private static function evalReadmeResolver(): void
    {
        $readme = (string) file_get_contents(dirname(__DIR__, 2) . '/README.md');
        preg_match_all('/```php\n(.*?)```/s', $readme, $blocks);
        $resolver = array_values(array_filter($blocks[1], static fn (string $code): bool => str_contains($code, 'Flagd::resolveContextUsing(')));
        self::assertCount(1, $resolver, 'one resolver example in the README');
        eval($resolver[0]);
    }

    public function test_it_falls_back_to_off_in_the_middleware_when_flagd_is_down(): void
    {
        $this->app->forgetInstance(Client::class);
        $this->app['config']->set('flagd.url', 'http://127.0.0.1:9');
        $router = $this->app['router'];
        $router->get('/portal', static fn (): string => 'portal')->middleware('flag:lv_portal');
        Flagd::clearResolvedInstances();
        Flagd::resolveContextUsing(static fn (): int => 42);

        self::assertSame(404, $this->dispatch(Request::create('/portal'))->getStatusCode());
    }

    public function test_it_forgets_the_memo_between_the_jobs_of_a_queue_worker(): void
    {
        $server = Server::shared();
        $server->createEnabledFlag('lv_queue');
        $server->admin('POST', '/api/v1/flags/lv_queue/environments/production/allow', ['companies' => ['42']]);
        $this->app['config']->set('queue', ['default' => 'memory', 'connections' => ['memory' => ['driver' => 'memory']]]);
        $this->app->register(QueueServiceProvider::class);
        $queue = new MemoryQueue();
        $this->app['queue']->addConnector('memory', static fn (): ConnectorInterface => new class ($queue) implements ConnectorInterface {
            public function __construct(private readonly MemoryQueue $queue)
            {
            }

            public function connect(array $config): MemoryQueue
            {
                return $this->queue;
            }
        });
        FlagCheckingJob::$seen = [];
        FlagCheckingJob::$afterFirst = static function () use ($server): void {
            $server->admin('POST', '/api/v1/flags/lv_queue/environments/production/disable', ['reason' => 'incident']);
        };
        $this->app['queue']->push(FlagCheckingJob::class . '@fire', ['flag' => 'lv_queue']);
        $this->app['queue']->push(FlagCheckingJob::class . '@fire', ['flag' => 'lv_queue']);

        $options = new WorkerOptions();
        $options->sleep = 0;
        $options->memory = 4096;
        $options->stopWhenEmpty = true;
        $this->app['queue.worker']->daemon('memory', 'default', $options);

        // The kill switch reached the worker's next job: the same process, the same client.
        self::assertSame([true, false], FlagCheckingJob::$seen);
    }

    public function test_it_keeps_the_memo_of_the_page_through_a_job_run_on_the_sync_queue(): void
    {
        $server = Server::shared();
        $server->createEnabledFlag('lv_sync');
        $server->admin('POST', '/api/v1/flags/lv_sync/environments/production/allow', ['companies' => ['42']]);
        // Laravel's default: the `sync` connection, jobs run inside the request.
        $this->app['config']->set('queue', ['default' => 'sync', 'connections' => ['sync' => ['driver' => 'sync']]]);
        $this->app->register(QueueServiceProvider::class);
        FlagCheckingJob::$seen = [];
        FlagCheckingJob::$afterFirst = static function () use ($server): void {
            $server->admin('POST', '/api/v1/flags/lv_sync/environments/production/disable', ['reason' => 'incident']);
        };
        Flagd::resolveContextUsing(static fn (): int => 42);
        $this->app['router']->get('/page', function (): string {
            $before = Flagd::isEnabled('lv_sync');
            $this->app['queue']->push(FlagCheckingJob::class . '@fire', ['flag' => 'lv_sync']);

            return json_encode([$before, Flagd::isEnabled('lv_sync')]);
        });

        try {
            $page = $this->dispatch(Request::create('/page'))->getContent();
        } finally {
            FlagCheckingJob::$afterFirst = null;
        }

        self::assertSame('[true,true]', $page, 'one value for the whole page');
        self::assertSame([true], FlagCheckingJob::$seen, 'the job is part of the page');
        self::assertSame(1, $this->app->make(Client::class)->requestCount(), 'the page\'s context fetched once');
    }

    public function test_it_registers_a_pennant_store_that_answers_from_flagd_without_a_warning(): void
    {
        require_once dirname(__DIR__) . '/Support/pennant-feature-manager.php';
        // The provider hooks Pennant only when its manager exists as it boots: a new app.
        $app = self::createApp();
        $app['config']->set('pennant.stores.flagd', ['driver' => 'flagd']);
        // What Pennant's own provider binds.
        $app->singleton(FeatureManager::class, static fn (Application $app): FeatureManager => new FeatureManager($app));

        // As Laravel's HandleExceptions does, a warning throws: the first resolution of the
        // manager in a page must not.
        set_error_handler(static function (int $level, string $message, string $file, int $line): bool {
            throw new \ErrorException($message, 0, $level, $file, $line);
        });
        try {
            $store = $app->make(FeatureManager::class)->store('flagd');

            self::assertInstanceOf(FlagdPennantDriver::class, $store);
            self::assertTrue($store->get('lv_portal', 42));
            self::assertFalse($store->get('lv_portal', 7));
        } finally {
            restore_error_handler();
        }
        self::assertSame(2, $app->make(Client::class)->requestCount(), 'through the app\'s client');
    }

    /** What the HTTP kernel does: bind the request, route it. */
    private function dispatch(Request $request): \Symfony\Component\HttpFoundation\Response
    {
        $this->app->instance('request', $request);

        return $this->app['router']->dispatch($request);
    }
}
