<?php

declare(strict_types=1);

namespace Flagd\Laravel\Console;

use Flagd\Client;
use Flagd\Context;
use Flagd\EvaluationDetails;
use Illuminate\Console\Command;

/**
 * `php artisan flagd:check customer_portal --company=42`: value, variant and reason. Exits
 * 0 when flagd evaluated the flag (with a value or without one), 1 on any error.
 */
final class CheckCommand extends Command
{
    /** @var string */
    protected $signature = 'flagd:check
        {key : The flag key}
        {--company= : The company id}
        {--targeting-key= : The targeting key (a user id)}
        {--attr=* : Attributes as name=value}';

    /** @var string */
    protected $description = 'Evaluate a flag through flagd and print its value, variant and reason';

    public function handle(Client $flags): int
    {
        $details = $flags->details((string) $this->argument('key'), $this->contextFromOptions());
        $this->line('value:   ' . self::describeValue($details));
        $this->line('variant: ' . ($details->variant ?? '-'));
        $this->line('reason:  ' . $details->reason);
        if ($details->isError()) {
            $this->error('error:   ' . $details->errorCode . ': ' . $details->errorMessage);

            return 1;
        }

        return 0;
    }

    private function contextFromOptions(): Context
    {
        $attributes = [];
        foreach ((array) $this->option('attr') as $pair) {
            [$name, $value] = array_pad(explode('=', (string) $pair, 2), 2, '');
            $attributes[$name] = $value;
        }
        $company = $this->option('company');
        // As typed: flagd compares company ids as strings, so `00042` is not company 42.
        $companyId = is_string($company) && $company !== '' ? $company : null;
        $targetingKey = $this->option('targeting-key');

        return new Context($companyId, is_string($targetingKey) && $targetingKey !== '' ? $targetingKey : null, $attributes);
    }

    /**
     * The value as JSON, or why there is none: the command passes no default, so printing
     * the `null` it gets back would read as a flag whose value is null.
     */
    private static function describeValue(EvaluationDetails $details): string
    {
        if ($details->isError()) {
            return "none (not evaluated, see the error below; the caller's default applies)";
        }
        // A success without a variant is flagd serving no value: the code's default applies.
        if ($details->variant === null) {
            return "none (flagd serves no value; the caller's default applies)";
        }

        return (string) json_encode($details->value, JSON_UNESCAPED_SLASHES | JSON_PRESERVE_ZERO_FRACTION);
    }
}
