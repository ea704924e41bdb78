<?php

declare(strict_types=1);

namespace Flagd;

/**
 * A context that cannot be sent to flagd (an attribute that is NAN or INF, or an object JSON
 * cannot encode or whose jsonSerialize() throws: that exception is the previous one). The
 * client catches it and answers defaults with `INVALID_CONTEXT`; it reaches the caller only
 * in strict mode (as a FlagdException) or from Context itself.
 */
final class InvalidContextException extends \InvalidArgumentException
{
}
