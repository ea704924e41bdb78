<?php

declare(strict_types=1);

namespace Flagd\Laravel\Pennant;

use Flagd\Client;
use Flagd\Context;
use Flagd\Contracts\ProvidesFlagdContext;
use Laravel\Pennant\Contracts\DefinesFeaturesExternally;
use Laravel\Pennant\Contracts\Driver;

/**
 * A read-only Laravel Pennant driver backed by flagd (config/pennant.php:
 * `'stores' => ['flagd' => ['driver' => 'flagd']]`). Flags are defined in flagd, not with
 * `Feature::define`. A scope maps to a context: a Context as is; a company id; a model
 * implementing ProvidesFlagdContext; a model with a `company_id` attribute, even a null one
 * (its key becomes the targeting key; null is no company; another type than an int or a
 * string is refused by flagd, as the client's own contexts are); a model without one is taken as
 * the company itself (its key), so a user loaded without its `company_id` column should
 * implement ProvidesFlagdContext. Values come from one bulk evaluation per scope.
 */
final class FlagdPennantDriver implements Driver, DefinesFeaturesExternally
{
    /** @var array<string, callable> features defined in code: used only when flagd does not know them */
    private array $localResolvers = [];

    /** @param string|null $resolver unused; reserved for a named scope resolver */
    public function __construct(private readonly Client $flags, private readonly ?string $resolver = null)
    {
    }

    public function define(string $feature, callable $resolver): void
    {
        $this->localResolvers[$feature] = $resolver;
    }

    /**
     * Every flag flagd knows (for the current context's answer), and those defined in code.
     *
     * @return array<string>
     */
    public function defined(): array
    {
        return $this->withLocalFeatures($this->flags->flagKeys($this->flags->currentContext()));
    }

    /**
     * Every flag flagd knows, even one that failed to evaluate for this scope (a rollout
     * with nothing to bucket it by), and those defined in code. Read from the scope's bulk
     * answer: no request of its own.
     *
     * @return list<string>
     */
    public function definedFeaturesForScope(mixed $scope): array
    {
        return $this->withLocalFeatures($this->flags->flagKeys(self::contextFor($scope)));
    }

    /**
     * @param array<string, array<int, mixed>> $features
     * @return array<string, array<int, mixed>>
     */
    public function getAll(array $features): array
    {
        $results = [];
        foreach ($features as $feature => $scopes) {
            foreach ($scopes as $index => $scope) {
                // Memoized per context in the client: one bulk request per distinct scope.
                $results[$feature][$index] = $this->get($feature, $scope);
            }
        }

        return $results;
    }

    /**
     * The flag's value for the scope. False, Pennant's "inactive", when flagd serves it
     * without a value or it fails to evaluate. A feature defined in code answers only for a
     * key flagd does not know (`FLAG_NOT_FOUND`), never in place of one it does.
     */
    public function get(string $feature, mixed $scope): mixed
    {
        $context = self::contextFor($scope);
        // Asked before evaluating: in strict mode evaluating a key flagd lacks throws.
        if (isset($this->localResolvers[$feature]) && $this->flags->knows($feature, $context) === false) {
            return ($this->localResolvers[$feature])($scope);
        }

        return $this->flags->details($feature, $context, false)->value;
    }

    public function set(string $feature, mixed $scope, mixed $value): void
    {
        throw ReadOnlyException::for('set', $feature);
    }

    public function setForAllScopes(string $feature, mixed $value): void
    {
        throw ReadOnlyException::for('set for all scopes', $feature);
    }

    public function delete(string $feature, mixed $scope): void
    {
        throw ReadOnlyException::for('delete', $feature);
    }

    public function purge(?array $features): void
    {
        throw ReadOnlyException::for('purge', $features === null ? 'every feature' : implode('`, `', $features));
    }

    /**
     * @param list<string> $flagd
     * @return list<string>
     */
    private function withLocalFeatures(array $flagd): array
    {
        return array_values(array_unique(array_merge($flagd, array_keys($this->localResolvers))));
    }

    /** The flagd context for a Pennant scope. */
    public static function contextFor(mixed $scope): Context
    {
        if ($scope instanceof Context) {
            return $scope;
        }
        if ($scope instanceof ProvidesFlagdContext) {
            return $scope->toFlagdContext();
        }
        if (self::companyId($scope) !== null) {
            return Context::company($scope);
        }
        if (is_object($scope)) {
            $key = method_exists($scope, 'getKey') ? $scope->getKey() : ($scope->id ?? null);
            if (self::hasCompanyId($scope)) {
                // A member of a company, or of none (null): never the company with its own id.
                $company = method_exists($scope, 'getAttribute') ? $scope->getAttribute('company_id') : ($scope->company_id ?? null);

                // Through the attributes, as the client reads one: a company id of another
                // type (a float, a bool) is sent as given and flagd refuses the context
                // (the defaults, logged), rather than the flags of no company.
                return new Context(null, is_scalar($key) ? (string) $key : null, ['companyId' => $company]);
            }
            if (self::companyId($key) !== null) {
                return Context::company($key);
            }
        }

        return Context::empty();
    }

    /** Whether the model has a `company_id` at all (loaded, even if null). */
    private static function hasCompanyId(object $model): bool
    {
        if (method_exists($model, 'getAttributes')) {
            // Read the loaded attributes, not getAttribute(): strict models throw for a
            // column that was not selected.
            return array_key_exists('company_id', (array) $model->getAttributes());
        }

        return property_exists($model, 'company_id') || isset($model->company_id);
    }

    private static function companyId(mixed $value): int|string|null
    {
        return is_int($value) || (is_string($value) && $value !== '') ? $value : null;
    }
}
