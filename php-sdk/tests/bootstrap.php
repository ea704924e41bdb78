<?php

declare(strict_types=1);

// No Composer here: a PSR-4 autoloader for the SDK and the tests.
spl_autoload_register(static function (string $class): void {
    $roots = [
        'Flagd\\Tests\\' => __DIR__ . '/',
        'Flagd\\' => dirname(__DIR__) . '/src/',
    ];
    foreach ($roots as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }

            return;
        }
    }
});

// The integration suites start the real flagd-server once, on first use
// (Flagd\Tests\Support\Server::shared()), and stop it when PHPUnit exits.
