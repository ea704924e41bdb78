<?php

declare(strict_types=1);

namespace Flagd\Tests\Unit;

use PHPUnit\Framework\TestCase;

/** The README's table of environment variables is the shipped config's, defaults included. */
final class ConfigDocsTest extends TestCase
{
    public function test_the_readme_lists_every_environment_variable_the_config_reads_with_its_default(): void
    {
        $root = dirname(__DIR__, 2);
        $config = (string) file_get_contents($root . '/config/flagd.php');
        $readme = (string) file_get_contents($root . '/README.md');
        preg_match_all("/env\\('(FLAGD_[A-Z_]+)', ([^)]+)\\)/", $config, $reads, PREG_SET_ORDER);
        self::assertGreaterThanOrEqual(11, count($reads), 'the config reads its settings with env()');
        foreach ($reads as [, $variable, $default]) {
            self::assertSame(1, preg_match('/^\| `' . $variable . '` \|.*$/m', $readme, $row), "README lacks a row for {$variable}");
            $cells = array_map('trim', explode('|', trim($row[0], '| ')));
            $shown = trim($default, "'");
            if ($shown !== '') {
                self::assertStringStartsWith("`{$shown}`", (string) end($cells), "README gives {$variable} another default");
            }
        }
    }
}
