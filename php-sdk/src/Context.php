<?php

declare(strict_types=1);

namespace Flagd;

/**
 * The evaluation context sent to flagd: the company (rollouts bucket by it), an optional
 * targeting key (usually the user) and free attributes for rule conditions.
 *
 * An attribute named `companyId` or `targetingKey` sets that field rather than staying an
 * attribute, whichever way it is given (`with()`, `withAttributes()`, the constructor), so
 * that a model's `only([...])` or an artisan `--attr` cannot break a page. A value of the
 * wrong type for the field (an array, a float, a bool, an int targeting key) is sent as
 * given: flagd refuses such a context, and the caller's default is served with
 * `INVALID_CONTEXT`, rather than the flags of no company or of a company guessed from it.
 *
 * Immutable: the `with*` methods return a copy.
 */
final class Context
{
    /** The context members that are fields, not attributes. */
    private const FIELDS = ['companyId', 'targetingKey'];

    public readonly int|string|null $companyId;
    public readonly ?string $targetingKey;
    /** @var array<string, mixed> every attribute but the fields */
    public readonly array $attributes;

    /**
     * Field values of the wrong type, sent as given for flagd to refuse. The field itself
     * is null then: it cannot hold them.
     *
     * @var array<string, mixed>
     */
    private readonly array $malformed;

    private ?string $cacheKey = null;

    /**
     * @param array<string, mixed> $attributes a `companyId` or `targetingKey` among them sets
     *     that field, unless the argument of the same name is given (not null)
     */
    public function __construct(
        int|string|null $companyId = null,
        ?string $targetingKey = null,
        array $attributes = [],
    ) {
        $this->assign($companyId, $targetingKey, $attributes);
    }

    /**
     * The fields and attributes, ready for `__unserialize()` to read back through the
     * constructor's rules. Malformed field values go back among the attributes, where they
     * came from: the members are then those the first release had, so that a release before
     * this one still reads the payload during a rolling deploy (a job queued by a newer web
     * node). The cache key memo is left out: it is recomputed on first use.
     *
     * @return array{companyId: int|string|null, targetingKey: ?string, attributes: array<string, mixed>}
     */
    public function __serialize(): array
    {
        return [
            'companyId' => $this->companyId,
            'targetingKey' => $this->targetingKey,
            'attributes' => array_replace($this->malformed, $this->attributes),
        ];
    }

    /**
     * Reads what `__serialize()` wrote, and the properties earlier versions serialized (with
     * or without private `malformed` values, a cache key memo that is dropped), through the
     * constructor's rules: a payload written before a rule changed gets today's fields, never
     * uninitialised ones.
     *
     * @param array<string, mixed> $data
     */
    public function __unserialize(array $data): void
    {
        $malformed = $data["\0" . self::class . "\0malformed"] ?? [];
        $attributes = array_replace(
            is_array($malformed) ? $malformed : [],
            is_array($data['attributes'] ?? null) ? $data['attributes'] : [],
        );
        // Through the attributes, not the arguments: a field value of a type the field does
        // not take (a payload of some other version) is then kept as malformed, not a TypeError.
        foreach (self::FIELDS as $name) {
            if (isset($data[$name])) {
                $attributes[$name] = $data[$name];
            }
        }
        $this->assign(null, null, $attributes);
    }

    /** @param array<string, mixed> $attributes */
    private function assign(int|string|null $companyId, ?string $targetingKey, array $attributes): void
    {
        $fields = ['companyId' => $companyId, 'targetingKey' => $targetingKey];
        $malformed = [];
        foreach (self::FIELDS as $name) {
            if (!array_key_exists($name, $attributes)) {
                continue;
            }
            $value = $attributes[$name];
            unset($attributes[$name]);
            if ($fields[$name] !== null) {
                continue;
            }
            if ($value === null || is_string($value) || ($name === 'companyId' && is_int($value))) {
                $fields[$name] = $value;
            } else {
                $malformed[$name] = $value;
            }
        }
        $this->companyId = $fields['companyId'];
        $this->targetingKey = $fields['targetingKey'];
        $this->attributes = $attributes;
        $this->malformed = $malformed;
    }

    /** An empty context: only flags without targeting give a meaningful answer. */
    public static function empty(): self
    {
        return new self();
    }

    /**
     * The usual context: a company, optionally a user within it.
     *
     * @param array<string, mixed> $attributes
     */
    public static function company(int|string $companyId, ?string $targetingKey = null, array $attributes = []): self
    {
        return new self($companyId, $targetingKey, $attributes);
    }

    public function withCompany(int|string|null $companyId): self
    {
        return $this->merged(['companyId' => $companyId]);
    }

    public function withTargetingKey(?string $targetingKey): self
    {
        return $this->merged(['targetingKey' => $targetingKey]);
    }

    /** An attribute; `companyId` and `targetingKey` set those fields (`withCompany()`, `withTargetingKey()`). */
    public function with(string $attribute, mixed $value): self
    {
        return $this->merged([$attribute => $value]);
    }

    /**
     * These attributes added, replacing those of the same names; a `companyId` or
     * `targetingKey` among them sets that field.
     *
     * @param array<string, mixed> $attributes
     */
    public function withAttributes(array $attributes): self
    {
        return $this->merged($attributes);
    }

    /**
     * A copy with these members set: a field named here takes the given value, through the
     * constructor's rules, and every other field stays as it was, malformed or not.
     *
     * @param array<string, mixed> $changes
     */
    private function merged(array $changes): self
    {
        return new self(
            array_key_exists('companyId', $changes) ? null : $this->companyId,
            array_key_exists('targetingKey', $changes) ? null : $this->targetingKey,
            // array_replace, not array_merge: an attribute named with digits keeps its name.
            array_replace($this->malformed, $this->attributes, $changes),
        );
    }

    /**
     * The OFREP `context` object.
     *
     * @return array<string, mixed>
     */
    public function toArray(): array
    {
        $context = $this->attributes + $this->malformed;
        if ($this->companyId !== null) {
            $context['companyId'] = $this->companyId;
        }
        if ($this->targetingKey !== null) {
            $context['targetingKey'] = $this->targetingKey;
        }

        return $context;
    }

    /**
     * The OFREP request body for this context.
     *
     * @throws InvalidContextException when an attribute cannot be sent as JSON
     */
    public function requestBody(): string
    {
        return self::encode(['context' => (object) $this->toArray()]);
    }

    /**
     * A stable key for this context: equal contexts give equal keys, whatever the attribute order.
     *
     * @throws InvalidContextException when an attribute cannot be sent as JSON
     */
    public function cacheKey(): string
    {
        return $this->cacheKey ??= hash('xxh128', self::encode(self::normalize($this->toArray())));
    }

    private static function encode(mixed $value): string
    {
        try {
            // Text read from a legacy Latin-1 column is not UTF-8: send U+FFFD in place of its
            // stray bytes rather than lose every flag of the page.
            return json_encode($value, JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION | JSON_INVALID_UTF8_SUBSTITUTE);
        } catch (\Throwable $e) {
            // Not only \JsonException: an attribute's jsonSerialize() may throw anything (an
            // Eloquent model asked for an attribute it did not load), and the client turns only
            // this exception into defaults.
            throw new InvalidContextException('the evaluation context cannot be sent as JSON: ' . $e->getMessage(), 0, $e);
        }
    }

    private static function normalize(mixed $value): mixed
    {
        if (!is_array($value)) {
            return $value;
        }
        if (!array_is_list($value)) {
            ksort($value, SORT_STRING);
        }

        return array_map(self::normalize(...), $value);
    }
}
