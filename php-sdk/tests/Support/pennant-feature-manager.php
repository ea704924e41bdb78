<?php

declare(strict_types=1);

// A stand-in for Laravel Pennant's FeatureManager, declared for the tests only when Pennant
// itself is not installed (Debian does not package it). It copies Pennant 1.x's
// `extend()` (the creator is stored bound to the manager, `$callback->bindTo($this, $this)`,
// as Laravel's own managers do) and how a store with a custom driver is created (the
// creator called with the container and the store's config), and nothing else: the real
// manager wraps the driver in its Decorator, this one hands back the driver itself.
//
// Once declared, the flagd provider of every application booted later in the run hooks
// the manager's resolution (it checks class_exists()); applications that never resolve
// the manager, which is every one but the test that binds it, behave as before.

namespace Laravel\Pennant;

use Illuminate\Contracts\Container\Container;

require_once __DIR__ . '/pennant-contracts.php';

if (!class_exists(FeatureManager::class)) {
    class FeatureManager
    {
        /** @var array<string, mixed> Pennant 1.x keeps whatever bindTo() returned, null included */
        protected $customCreators = [];

        /** @var array<string, mixed> */
        protected $stores = [];

        public function __construct(protected Container $container)
        {
        }

        public function extend($driver, \Closure $callback)
        {
            $this->customCreators[$driver] = $callback->bindTo($this, $this);

            return $this;
        }

        /** The store named in `pennant.stores`, the default store when no name is given. */
        public function store($name = null)
        {
            $name = $name ?: ($this->container['config']->get('pennant.default') ?? 'database');

            return $this->stores[$name] ??= $this->resolve($name);
        }

        protected function resolve($name)
        {
            $config = $this->container['config']["pennant.stores.{$name}"];
            if ($config === null) {
                throw new \InvalidArgumentException("Pennant store [{$name}] is not defined.");
            }
            if (isset($this->customCreators[$config['driver']])) {
                return $this->customCreators[$config['driver']]($this->container, $config);
            }

            throw new \InvalidArgumentException("Driver [{$config['driver']}] is not supported.");
        }
    }
}
