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

    public function test_it_unserializes_a_context_it_serialized_as_an_equal_context(): void
    {
        foreach ([
            Context::empty(),
            Context::company(42, 'u1', ['plan' => 'pro', '7' => 'digits']),
            Context::company('007'),
            Context::empty()->with('companyId', [5])->withTargetingKey('u1')->with('plan', 'pro'),
            new Context(attributes: ['targetingKey' => 17, 'plan' => 'pro']),
        ] as $ctx) {
            $label = json_encode($ctx->toArray());
            $key = $ctx->cacheKey();
            $payload = serialize($ctx);
            self::assertStringNotContainsString($key, $payload, $label);

            $copy = unserialize($payload);
            self::assertSameContext($ctx, $copy, $label);
            // Still malformed after the round trip: setting the other field keeps the bad value.
            self::assertSame($ctx->withTargetingKey('u9')->toArray(), $copy->withTargetingKey('u9')->toArray(), $label);
        }
    }

    public function test_it_unserializes_a_context_serialized_by_the_previous_version(): void
    {
        // What the previous Context (public readonly companyId, targetingKey and attributes; a
        // private cacheKey memo; no malformed values) gave serialize(), as a queued job or a
        // cache entry written before an upgrade holds it. The memo is not one this version
        // computes: it must not be served.
        $previous = static fn (string $members): string => str_replace('~', "\0", 'O:13:"Flagd\Context":4:{s:23:"~Flagd\Context~cacheKey";'
            . 's:32:"ffffffffffffffffffffffffffffffff";' . $members . '}');
        $cases = [
            [$previous('s:9:"companyId";i:42;s:12:"targetingKey";s:2:"u1";s:10:"attributes";a:1:{s:4:"plan";s:3:"pro";}'), Context::company(42, 'u1', ['plan' => 'pro'])],
            [$previous('s:9:"companyId";N;s:12:"targetingKey";N;s:10:"attributes";a:0:{}'), Context::empty()],
            // The payload of an object the previous version never built, read by today's rules:
            // an attribute named like a field sets it, a value of the wrong type stays malformed.
            [$previous('s:9:"companyId";N;s:12:"targetingKey";N;s:10:"attributes";a:2:{s:9:"companyId";s:1:"5";s:4:"plan";s:3:"pro";}'), Context::company('5', attributes: ['plan' => 'pro'])],
            [$previous('s:9:"companyId";d:5.5;s:12:"targetingKey";s:2:"u1";s:10:"attributes";a:0:{}'), new Context(targetingKey: 'u1', attributes: ['companyId' => 5.5])],
            // Serialized by the release that kept malformed values in a private property of its own.
            [
                str_replace('~', "\0", 'O:13:"Flagd\Context":5:{s:9:"companyId";N;s:12:"targetingKey";s:2:"u1";s:10:"attributes";a:1:{s:4:"plan";s:3:"pro";}'
                    . 's:24:"~Flagd\Context~malformed";a:1:{s:9:"companyId";a:1:{i:0;i:5;}}s:23:"~Flagd\Context~cacheKey";N;}'),
                new Context(targetingKey: 'u1', attributes: ['companyId' => [5], 'plan' => 'pro']),
            ],
        ];
        foreach ($cases as [$payload, $expected]) {
            $label = json_encode($expected->toArray());
            $ctx = unserialize($payload);

            self::assertSameContext($expected, $ctx, $label);
            self::assertEquals($expected->with('beta', true), $ctx->with('beta', true), $label);
        }
    }

    /** What an unserialized context must be: the expected one, field by field and as sent. */
    private static function assertSameContext(Context $expected, mixed $actual, string $label): void
    {
        self::assertInstanceOf(Context::class, $actual, $label);
        self::assertSame([$expected->companyId, $expected->targetingKey, $expected->attributes], [$actual->companyId, $actual->targetingKey, $actual->attributes], $label);
        self::assertSame($expected->toArray(), $actual->toArray(), $label);
        self::assertSame($expected->cacheKey(), $actual->cacheKey(), $label);
        self::assertSame($expected->requestBody(), $actual->requestBody(), $label);
    }
}
