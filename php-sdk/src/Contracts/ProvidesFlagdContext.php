<?php

declare(strict_types=1);

namespace Flagd\Contracts;

use Flagd\Context;

/** Implemented by models (or anything used as a Pennant scope) that know their flagd context. */
interface ProvidesFlagdContext
{
    public function toFlagdContext(): Context;
}
