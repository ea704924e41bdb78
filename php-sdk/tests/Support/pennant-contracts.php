<?php

declare(strict_types=1);

// Laravel Pennant's driver interfaces, declared for the tests only when Pennant itself is
// not installed (Debian does not package it). Signatures as in laravel/pennant 1.x.

namespace Laravel\Pennant\Contracts;

if (!interface_exists(Driver::class)) {
    interface Driver
    {
        public function define(string $feature, callable $resolver): void;

        /** @return array<string> */
        public function defined(): array;

        /** @param array<string, array<int, mixed>> $features @return array<string, array<int, mixed>> */
        public function getAll(array $features): array;

        public function get(string $feature, mixed $scope): mixed;

        public function set(string $feature, mixed $scope, mixed $value): void;

        public function setForAllScopes(string $feature, mixed $value): void;

        public function delete(string $feature, mixed $scope): void;

        public function purge(?array $features): void;
    }
}

if (!interface_exists(DefinesFeaturesExternally::class)) {
    interface DefinesFeaturesExternally
    {
        /** @return list<string> */
        public function definedFeaturesForScope(mixed $scope): array;
    }
}
