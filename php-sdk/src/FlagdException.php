<?php

declare(strict_types=1);

namespace Flagd;

/** Thrown only in strict mode: outside it, every failure degrades to a stale value or the default. */
class FlagdException extends \RuntimeException
{
}
