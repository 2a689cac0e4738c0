<#
.SYNOPSIS
    Runs every *.Tests.ps1 here against the built module and writes {Passed, Failed, Skipped} to -ResultPath.
#>
param(
    [Parameter(Mandatory)] [string] $PesterPath,
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $ResultPath,
    # Only these test files (names like Libvirt or Libvirt.Tests.ps1); all of them by default.
    [string[]] $Only
)
$ErrorActionPreference = 'Stop'
Import-Module $PesterPath -Force
# The tests import the module from here, in this process and in the child processes they start.
$env:VMCHECKPOINT_TEST_MODULE = (Resolve-Path $ModulePath).Path
$config = New-PesterConfiguration
$config.Run.Path = if ($Only) { $Only -split "," | ForEach-Object { Join-Path $PSScriptRoot ($_ -replace '(\.Tests\.ps1)?$', '.Tests.ps1') } } else { $PSScriptRoot }
$config.Run.PassThru = $true
$config.Output.Verbosity = 'Detailed'
$config.TestResult.Enabled = $true
$config.TestResult.OutputPath = [IO.Path]::ChangeExtension($ResultPath, '.xml')
$result = Invoke-Pester -Configuration $config
$summary = [pscustomobject]@{
    Passed  = $result.PassedCount
    Failed  = $result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount
    Skipped = $result.SkippedCount + $result.NotRunCount
    # Named, so that the last lines of a long run say what failed.
    FailedNames = @(@($result.Failed | ForEach-Object { "$($_.ExpandedPath): $(($_.ErrorRecord | Select-Object -First 1).Exception.Message -split "`n" | Select-Object -First 1)" }) +
        @($result.FailedBlocks | ForEach-Object { "$($_.ExpandedPath) (block): $(($_.ErrorRecord | Select-Object -First 1).Exception.Message -split "`n" | Select-Object -First 1)" }) +
        @($result.FailedContainers | ForEach-Object { "$($_.Item) (file): $(($_.ErrorRecord | Select-Object -First 1).Exception.Message -split "`n" | Select-Object -First 1)" }))
}
$summary | ConvertTo-Json | Set-Content -Path $ResultPath
if ($summary.Failed -gt 0) { exit 1 }
