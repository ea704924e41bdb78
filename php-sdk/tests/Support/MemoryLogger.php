<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

/** A duck-typed PSR-3 logger keeping what it was told. */
final class MemoryLogger
{
    /** @var list<array{0: string, 1: string, 2: array<string, mixed>}> */
    public array $records = [];

    public function warning(string|\Stringable $message, array $context = []): void
    {
        $this->records[] = ['warning', (string) $message, $context];
    }

    public function error(string|\Stringable $message, array $context = []): void
    {
        $this->records[] = ['error', (string) $message, $context];
    }

    public function messages(): string
    {
        return implode("\n", array_map(static fn (array $r): string => $r[0] . ': ' . $r[1], $this->records));
    }
}
