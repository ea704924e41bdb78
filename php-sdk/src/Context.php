<?php

declare(strict_types=1);

namespace Flagd;

/**
 * The evaluation context sent to flagd: the company (rollouts bucket by it), an optional
 * targeting key (usually the user) and free attributes for rule conditions.
 *
 * Immutable: the `with*` methods return a copy.
 */
final class Context
{
    private ?string $cacheKey = null;

    /**
     * @param array<string, mixed> $attributes
     */
    public function __construct(
        public readonly int|string|null $companyId = null,
        public readonly ?string $targetingKey = null,
        public readonly array $attributes = [],
    ) {
        foreach (['companyId', 'targetingKey'] as $reserved) {
            if (array_key_exists($reserved, $attributes)) {
                throw new \InvalidArgumentException("`{$reserved}` is not an attribute: pass it as the constructor argument");
            }
        }
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
        return new self($companyId, $this->targetingKey, $this->attributes);
    }

    public function withTargetingKey(?string $targetingKey): self
    {
        return new self($this->companyId, $targetingKey, $this->attributes);
    }

    public function with(string $attribute, mixed $value): self
    {
        $attributes = $this->attributes;
        $attributes[$attribute] = $value;

        return new self($this->companyId, $this->targetingKey, $attributes);
    }

    /**
     * @param array<string, mixed> $attributes
     */
    public function withAttributes(array $attributes): self
    {
        return new self($this->companyId, $this->targetingKey, array_merge($this->attributes, $attributes));
    }

    /**
     * The OFREP `context` object.
     *
     * @return array<string, mixed>
     */
    public function toArray(): array
    {
        $context = $this->attributes;
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
        } catch (\JsonException $e) {
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
