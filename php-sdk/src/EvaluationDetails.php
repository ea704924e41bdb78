<?php

declare(strict_types=1);

namespace Flagd;

/**
 * The outcome of one flag evaluation, as OpenFeature describes it. When anything went wrong
 * (`errorCode` set) `value` is the caller's default, or the last known value when
 * `reason` is `STALE`. A success may carry no value either (a flag without an off variant
 * that nothing served): `value` is then the caller's default, with the service's reason
 * (`DEFAULT`, `DISABLED`, …) and no `errorCode`.
 */
final class EvaluationDetails
{
    public const REASON_ERROR = 'ERROR';
    /** Not an OFREP reason: the value is the last one the service answered, served while it is unreachable. */
    public const REASON_STALE = 'STALE';

    public const FLAG_NOT_FOUND = 'FLAG_NOT_FOUND';
    public const TYPE_MISMATCH = 'TYPE_MISMATCH';
    public const INVALID_CONTEXT = 'INVALID_CONTEXT';
    public const PARSE_ERROR = 'PARSE_ERROR';
    public const PROVIDER_NOT_READY = 'PROVIDER_NOT_READY';
    public const GENERAL = 'GENERAL';

    /**
     * @param array<string, mixed> $metadata
     */
    public function __construct(
        public readonly string $key,
        public readonly mixed $value,
        public readonly ?string $variant,
        public readonly string $reason,
        public readonly ?string $errorCode = null,
        public readonly ?string $errorMessage = null,
        public readonly array $metadata = [],
    ) {
    }

    public function isError(): bool
    {
        return $this->errorCode !== null;
    }

    /** @return array<string, mixed> */
    public function toArray(): array
    {
        return [
            'key' => $this->key,
            'value' => $this->value,
            'variant' => $this->variant,
            'reason' => $this->reason,
            'errorCode' => $this->errorCode,
            'errorMessage' => $this->errorMessage,
            'metadata' => $this->metadata,
        ];
    }
}
