<?php

declare(strict_types=1);

namespace Flagd\Tests\Unit;

use Flagd\Context;
use PHPUnit\Framework\TestCase;

final class ContextTest extends TestCase
{
    public function test_it_sets_the_company_and_targeting_key_from_attributes_of_those_names(): void
    {
        $fromAttributes = new Context(attributes: ['companyId' => 5, 'targetingKey' => 'u1', 'plan' => 'pro']);
        self::assertSame([5, 'u1', ['plan' => 'pro']], [$fromAttributes->companyId, $fromAttributes->targetingKey, $fromAttributes->attributes]);
        self::assertSame(['plan' => 'pro', 'companyId' => 5, 'targetingKey' => 'u1'], $fromAttributes->toArray());
        self::assertSame(Context::company(5, 'u1', ['plan' => 'pro'])->cacheKey(), $fromAttributes->cacheKey());

        self::assertEquals(Context::empty()->withCompany(5), Context::empty()->with('companyId', 5));
        self::assertEquals(Context::company(42)->withTargetingKey('u1'), Context::company(42)->with('targetingKey', 'u1'));
        self::assertSame(7, Context::company(42)->with('companyId', 7)->companyId, 'with() replaces the company');
        self::assertNull(Context::company(42)->with('companyId', null)->companyId);

        // A model's only([...]) handed over as attributes.
        $user = ['companyId' => '5', 'plan' => 'pro'];
        $ctx = Context::company(42, 'u1', ['beta' => true])->withAttributes($user);
        self::assertSame(['5', 'u1', ['beta' => true, 'plan' => 'pro']], [$ctx->companyId, $ctx->targetingKey, $ctx->attributes]);
    }

    public function test_it_prefers_the_constructor_argument_to_an_attribute_of_the_same_name(): void
    {
        $ctx = new Context(42, 'u1', ['companyId' => 7, 'targetingKey' => 'u2', 'plan' => 'pro']);

        self::assertSame([42, 'u1', ['plan' => 'pro']], [$ctx->companyId, $ctx->targetingKey, $ctx->attributes]);
        self::assertSame(['plan' => 'pro', 'companyId' => 42, 'targetingKey' => 'u1'], $ctx->toArray());
        self::assertSame(Context::company(42, 'u1', ['plan' => 'pro'])->cacheKey(), $ctx->cacheKey());
    }

    public function test_it_keeps_a_field_value_of_the_wrong_type_out_of_the_field_and_sends_it_as_given(): void
    {
        $wrong = [
            'companyId' => [[5], 5.0, true, new \stdClass()],
            'targetingKey' => [17, ['u1'], false, 1.5],
        ];
        foreach ($wrong as $field => $values) {
            foreach ($values as $value) {
                $label = $field . ' ' . json_encode($value);
                foreach ([
                    new Context(attributes: [$field => $value]),
                    Context::empty()->with($field, $value),
                    Context::empty()->withAttributes([$field => $value, 'plan' => 'pro']),
                ] as $ctx) {
                    self::assertNull($ctx->{$field}, $label);
                    self::assertArrayNotHasKey($field, $ctx->attributes, $label);
                    self::assertSame($value, $ctx->toArray()[$field], $label);
                    self::assertNotSame(Context::empty()->cacheKey(), $ctx->cacheKey(), $label);
                }
            }
        }

        // The other field can change without losing it; setting the field itself replaces it.
        $ctx = Context::empty()->with('companyId', [5])->withTargetingKey('u1')->with('plan', 'pro');
        self::assertSame(['plan' => 'pro', 'companyId' => [5], 'targetingKey' => 'u1'], $ctx->toArray());
        self::assertSame(['plan' => 'pro', 'companyId' => 5, 'targetingKey' => 'u1'], $ctx->withCompany(5)->toArray());
        self::assertSame(['plan' => 'pro', 'targetingKey' => 'u1'], $ctx->withCompany(null)->toArray());
    }
}
