<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

use Flagd\Laravel\FlagdServiceProvider;
use Illuminate\Config\Repository;
use Illuminate\Contracts\Debug\ExceptionHandler;
use Illuminate\Filesystem\FilesystemServiceProvider;
use Illuminate\Foundation\Application;
use Illuminate\Foundation\Exceptions\Handler;
use Illuminate\Support\Facades\Facade;
use Illuminate\Translation\TranslationServiceProvider;
use Illuminate\View\ViewServiceProvider;

/** A real Laravel application (Debian's php-laravel-framework) with the flagd provider. */
final class LaravelApp
{
    public static function load(): void
    {
        static $loaded = false;
        if (!$loaded) {
            $autoload = getenv('ILLUMINATE_AUTOLOAD') ?: '/usr/share/php/Illuminate/autoload.php';
            require_once $autoload;
            $loaded = true;
        }
    }

    /**
     * An application whose flagd client asks the shared test server as production's
     * evaluate token, with no cache: each check reaches the server. With a logger, that is
     * Laravel's log; else nothing is logged.
     */
    public static function onSharedServer(string $views, ?object $logger = null): Application
    {
        $server = Server::shared();
        $app = self::create([
            'url' => $server->url,
            'token' => $server->evaluateToken(),
            'timeout_ms' => 2000,
            'connect_timeout_ms' => 1000,
            'cache' => 'none',
            'log' => $logger !== null,
        ], $views);
        if ($logger !== null) {
            $app->instance('log', $logger);
        }

        return $app;
    }

    /** @param array<string, mixed> $flagd config values set before the provider merges its defaults */
    public static function create(array $flagd, string $views): Application
    {
        self::load();
        $base = Processes::tempDir('laravel');
        mkdir($base . '/config');
        mkdir($base . '/compiled');
        $app = new Application($base);
        $app->instance('config', new Repository([
            'app' => ['debug' => false, 'env' => 'testing', 'locale' => 'en', 'fallback_locale' => 'en'],
            'view' => ['paths' => [$views], 'compiled' => $base . '/compiled'],
            'flagd' => $flagd,
        ]));
        $app->singleton(ExceptionHandler::class, Handler::class);
        Facade::clearResolvedInstances();
        Facade::setFacadeApplication($app);
        $app->register(FilesystemServiceProvider::class);
        $app->register(ViewServiceProvider::class);
        $app->register(TranslationServiceProvider::class);
        $app->register(FlagdServiceProvider::class);
        $app->boot();

        return $app;
    }
}
