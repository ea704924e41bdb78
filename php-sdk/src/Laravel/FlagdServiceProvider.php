<?php

declare(strict_types=1);

namespace Flagd\Laravel;

use Flagd\Client;
use Flagd\Laravel\Console\CheckCommand;
use Flagd\Laravel\Middleware\EnsureFlagIsOn;
use Flagd\Laravel\Pennant\FlagdPennantDriver;
use Illuminate\Support\ServiceProvider;

/**
 * Auto-discovered (composer.json `extra.laravel`). Binds the client as a singleton, merges
 * and publishes `config/flagd.php`, and registers the `flag` middleware, the `@flag`
 * Blade directive, the `flagd:check` command and, when Pennant is installed, its
 * `flagd` driver. Uses only APIs present from Laravel 8 to 12.
 */
final class FlagdServiceProvider extends ServiceProvider
{
    public function register(): void
    {
        $this->mergeConfigFrom(self::configPath(), 'flagd');

        $this->app->singleton(Client::class, static function ($app): Client {
            /** @var array<string, mixed> $config */
            $config = (array) $app['config']->get('flagd', []);
            $logger = ($config['log'] ?? true) && $app->bound('log') ? $app->make('log') : null;
            $client = Client::fromConfig($config, $logger);
            // The context resolver receives the current request.
            $client->setContextResolverInput(static fn (): array => [$app->bound('request') ? $app->make('request') : null]);

            return $client;
        });
        $this->app->alias(Client::class, 'flagd');
    }

    public function boot(): void
    {
        $this->publishes([self::configPath() => $this->app->configPath('flagd.php')], 'flagd-config');

        $this->callAfterResolving('router', static function ($router): void {
            $router->aliasMiddleware('flag', EnsureFlagIsOn::class);
        });

        $this->callAfterResolving('blade.compiler', function ($blade): void {
            $app = $this->app;
            $blade->if('flag', static function (string $key, mixed $context = null) use ($app): bool {
                $flags = $app->make(Client::class);

                return $flags->isEnabled($key, $context === null ? null : $flags->contextFrom($context, '@flag was given'));
            });
        });

        if ($this->app->runningInConsole()) {
            $this->commands([CheckCommand::class]);
        }

        // Long-lived workers: forget the memo after each request (Octane terminates the app
        // after every one) and before each queued job (a queue worker never terminates), so a
        // kill switch reaches them as it reaches PHP-FPM.
        $flush = function (): void {
            if ($this->app->resolved(Client::class)) {
                $this->app->make(Client::class)->flush();
            }
        };
        if (method_exists($this->app, 'terminating')) {
            $this->app->terminating($flush);
        }
        $this->callAfterResolving('events', function ($events) use ($flush): void {
            $events->listen('Illuminate\Queue\Events\JobProcessing', function ($event) use ($flush): void {
                if (!$this->runsInline((string) ($event->connectionName ?? ''))) {
                    $flush();
                }
            });
        });

        $manager = 'Laravel\Pennant\FeatureManager';
        if (class_exists($manager)) {
            $this->callAfterResolving($manager, function ($features): void {
                $app = $this->app;
                // Not static: Pennant's extend() binds the creator to the manager, and binding a
                // static closure fails (a warning, then "driver not supported").
                $features->extend('flagd', fn ($container = null, array $config = []): FlagdPennantDriver => new FlagdPennantDriver(
                    $app->make(Client::class),
                    isset($config['resolver']) && is_string($config['resolver']) ? $config['resolver'] : null,
                ));
            });
        }
    }

    /**
     * Whether a queue connection runs its jobs inside the current request or command (the
     * `sync` driver, Laravel's default connection): such a job is part of that page, which
     * must keep one answer per context from start to end.
     */
    private function runsInline(string $connection): bool
    {
        return $connection === 'sync' || $this->app['config']->get("queue.connections.{$connection}.driver") === 'sync';
    }

    public static function configPath(): string
    {
        return dirname(__DIR__, 2) . '/config/flagd.php';
    }
}
