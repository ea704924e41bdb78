<?php

declare(strict_types=1);

namespace Flagd\Laravel\Facades;

use Flagd\Client;
use Illuminate\Support\Facades\Facade;

/**
 * @method static bool isEnabled(string $key, ?\Flagd\Context $context = null, bool $default = false)
 * @method static bool boolean(string $key, bool $default, ?\Flagd\Context $context = null)
 * @method static string string(string $key, string $default, ?\Flagd\Context $context = null)
 * @method static int int(string $key, int $default, ?\Flagd\Context $context = null)
 * @method static float float(string $key, float $default, ?\Flagd\Context $context = null)
 * @method static array object(string $key, array $default, ?\Flagd\Context $context = null)
 * @method static \Flagd\EvaluationDetails details(string $key, ?\Flagd\Context $context = null, mixed $default = null)
 * @method static array all(?\Flagd\Context $context = null)
 * @method static array allDetails(?\Flagd\Context $context = null)
 * @method static list<string> flagKeys(?\Flagd\Context $context = null)
 * @method static bool|null knows(string $key, ?\Flagd\Context $context = null)
 * @method static void resolveContextUsing(?callable $resolver)
 * @method static \Flagd\Context currentContext()
 * @method static \Flagd\Context contextFrom(mixed $value, string $from = 'the caller gave')
 * @method static void flush()
 *
 * @see Client
 */
final class Flagd extends Facade
{
    protected static function getFacadeAccessor(): string
    {
        return Client::class;
    }
}
