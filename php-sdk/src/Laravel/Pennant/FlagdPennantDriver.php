<?php

declare(strict_types=1);

namespace Flagd\Laravel\Pennant;

use Flagd\Client;
use Flagd\Context;
use Flagd\Contracts\ProvidesFlagdContext;
use Illuminate\Auth\GenericUser;
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
        return match (true) {
            $scope instanceof Context => $scope,
            $scope instanceof ProvidesFlagdContext => $scope->toFlagdContext(),
            self::companyId($scope) !== null => Context::company($scope),
            is_object($scope) => self::contextForModel($scope),
            default => Context::empty(),
        };
    }

    /**
     * A member of a company, or of none (a null `company_id`), with its key as the targeting
     * key: never the company with its own id. A model without the attribute is the company.
     */
    private static function contextForModel(object $model): Context
    {
        $key = method_exists($model, 'getKey') ? $model->getKey() : ($model->id ?? null);
        $attributes = self::attributesOf($model);
        $hasCompany = $attributes !== null ? array_key_exists('company_id', $attributes) : self::hasCompanyProperty($model);
        if (!$hasCompany) {
            return self::companyId($key) !== null ? Context::company($key) : Context::empty();
        }
        $company = match (true) {
            // Through getAttribute(): the model's casts apply.
            method_exists($model, 'getAttribute') => $model->getAttribute('company_id'),
            $attributes !== null => $attributes['company_id'],
            default => $model->company_id ?? null,
        };

        // Through the attributes, as the client reads one: a company id of another type (a
        // float, a bool) is sent as given and flagd refuses the context (the defaults,
        // logged), rather than the flags of no company.
        return new Context(null, is_scalar($key) ? (string) $key : null, ['companyId' => $company]);
    }

    /**
     * The attributes of a model that keeps them in an array behind `__get()`: an Eloquent
     * model (or a Fluent), and Laravel's GenericUser, what the `database` user provider
     * returns. Their `__isset()` is false for a null attribute, so only the array tells a
     * null `company_id` from none at all. Null for any other object.
     *
     * @return array<string, mixed>|null
     */
    private static function attributesOf(object $model): ?array
    {
        if (method_exists($model, 'getAttributes')) {
            // The loaded attributes, not getAttribute(): strict models throw for a column
            // that was not selected.
            $attributes = $model->getAttributes();

            return is_array($attributes) ? $attributes : null;
        }
        if ($model instanceof GenericUser) {
            // GenericUser offers no accessor for its array, and reading a missing key warns.
            $attributes = (new \ReflectionProperty(GenericUser::class, 'attributes'))->getValue($model);

            return is_array($attributes) ? $attributes : null;
        }

        return null;
    }

    /** Whether a plain object has a `company_id` property, declared or set, even a null one. */
    private static function hasCompanyProperty(object $model): bool
    {
        return property_exists($model, 'company_id') || isset($model->company_id);
    }

    private static function companyId(mixed $value): int|string|null
    {
        return is_int($value) || (is_string($value) && $value !== '') ? $value : null;
    }
}
