#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Builds, tests, benchmarks, packages and demonstrates VmCheckpoint.
.DESCRIPTION
    Tasks (several may be given; each does its own set-up):
      Bootstrap  installs what building and testing need on a fresh Debian machine (as root): Debian packages
                 (qemu-utils, ...) and Pester from NuGet. Does nothing that is already done.
      Build      builds the complete module folder out/VmCheckpoint (Import-Module ./out/VmCheckpoint).
      UnitTest   the xunit tests of the engine alone (tests/VmCheckpoint.Core.Tests): no module build, no VMs; prints
                 "Tests: N passed, N failed, N skipped" and fails on any failure.
      Test       Bootstrap, Build, then the xunit tests and the Pester tests; prints
                 "Tests: N passed, N failed, N skipped" and fails on any failure.
      Bench      runs bench/Invoke-Benchmark.ps1: VmCheckpoint against borg, restic and rdiff-backup on one image;
                 then bench/Invoke-S3Benchmark.ps1: the same checkpoints into S3 (radosgw) and into a folder.
      Package    zips the module folder into out/VmCheckpoint-<version>.zip, and makes out/VmCheckpoint.<version>.nupkg
                 (what a PowerShell repository serves: Publish-PSResource, Install-PSResource).
      Reliability the reliability suite at larger counts (VMCHECKPOINT_RELIABILITY_COUNT, 120 by default); its
                 figures go into docs/figures.md.
      Demo       checkpoints, changes, checkpoints again, verifies and restores a real qcow2 image into a folder repository;
                 then checkpoints a running guest live with its memory, kills it, and Watch-VmHealth brings it back.
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 Test
#>
[CmdletBinding()]
param(
    [Parameter(Position = 0)]
    [ValidateSet('Bootstrap', 'Build', 'UnitTest', 'Test', 'Reliability', 'Bench', 'Package', 'Demo')]
    [string[]] $Task = @('Build'),

    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',

    # Passed to the benchmark: the image's virtual size and real data, in GiB.
    [int] $BenchVirtualGiB = 8,
    [int] $BenchDataGiB = 3
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$Root = $PSScriptRoot
$Out = Join-Path $Root 'out'
$ModuleOut = Join-Path $Out 'VmCheckpoint'
$PesterVersion = '6.2.0'

function Invoke-Native {
    param([string] $File, [string[]] $Arguments)
    & $File @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$File $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

function Test-Command([string] $Name) { [bool](Get-Command $Name -CommandType Application -ErrorAction SilentlyContinue) }

function Install-DebianPackage {
    param([string[]] $Package, [string[]] $Command)
    $missing = @($Command | Where-Object { -not (Test-Command $_) })
    if ($missing.Count -eq 0) { return }
    if (-not $IsLinux -or -not (Test-Path /etc/debian_version)) {
        throw "Missing $($missing -join ', '): install $($Package -join ', ') with your system's package manager."
    }
    $sudo = @()
    if ((& id -u) -ne '0') { $sudo = @('sudo') }
    Write-Host "Installing Debian packages: $($Package -join ' ')"
    $env:DEBIAN_FRONTEND = 'noninteractive'
    if ($sudo) { Invoke-Native sudo (@('apt-get', 'update', '-qq')) } else { Invoke-Native apt-get @('update', '-qq') }
    $arguments = @('install', '-y', '-qq', '--no-install-recommends') + $Package
    if ($sudo) { Invoke-Native sudo (@('apt-get') + $arguments) } else { Invoke-Native apt-get $arguments }
}

function Get-PesterModulePath {
    $nugetRoot = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path ([Environment]::GetFolderPath('UserProfile')) '.nuget/packages' }
    Join-Path $nugetRoot "pester/$PesterVersion/tools/Pester.psd1"
}

function Invoke-Bootstrap {
    # qemu-img and qemu-io are the independent reference every image test compares against.
    Install-DebianPackage -Package @('qemu-utils') -Command @('qemu-img', 'qemu-io')
    # libvhdi is a second, independent VHDX reader: the oracle where qemu-img has no support (differencing, 4K sectors).
    if (-not (Test-Path /usr/lib/python3/dist-packages/pyvhdi*)) { Install-DebianPackage -Package @('python3-libvhdi') -Command @('__none__') }
    # samba and smbnetfs (FUSE) give the share tests a real SMB share on 127.0.0.1 (tests/hosts/start-smb.sh).
    Install-DebianPackage -Package @('samba', 'smbnetfs', 'fuse3') -Command @('smbd', 'smbnetfs', 'fusermount3')
    # libvirt and qemu run the live tests' VMs; libnbd is the NBD client of pull backups.
    Install-DebianPackage -Package @('libvirt-daemon-system', 'libvirt-clients', 'qemu-system-x86', 'libnbd0', 'nbdkit') -Command @('libvirtd', 'virsh', 'qemu-system-x86_64', 'nbdkit')
    if (-not (Test-Path /usr/lib/x86_64-linux-gnu/libnbd.so.0)) { Install-DebianPackage -Package @('libnbd0') -Command @('__none__') }
    # busybox-static is the whole userland of the tiny test guest (tests/hosts/guest/build-guest.sh).
    Install-DebianPackage -Package @('busybox-static') -Command @('busybox')
    # Mount-VmCheckpoint: nbdfuse shows an export as a file; loop devices, sfdisk, and mkfs.xfs for the tests' images.
    Install-DebianPackage -Package @('nbdfuse', 'libnbd-bin', 'fdisk', 'xfsprogs') -Command @('nbdfuse', 'nbdinfo', 'sfdisk', 'mkfs.xfs')
    # Encrypted repositories derive keys with libargon2 (the reference Argon2; BouncyCastle's is the fallback).
    if (-not (Test-Path /usr/lib/x86_64-linux-gnu/libargon2.so.1)) { Install-DebianPackage -Package @('libargon2-1') -Command @('__none__') }
    # A real SMTP server (aiosmtpd, for Debian's /usr/bin/python3) and a real syslog daemon receive the notification
    # tests' notices (tests/hosts/start-smtp.sh, start-syslog.sh).
    if (-not (Test-Path /usr/lib/python3/dist-packages/aiosmtpd)) { Install-DebianPackage -Package @('python3-aiosmtpd') -Command @('__none__') }
    Install-DebianPackage -Package @('rsyslog') -Command @('rsyslogd')
    # A one-node Ceph and its S3 gateway (radosgw) give the S3 tests a real S3 endpoint on 127.0.0.1, and s3cmd is the
    # independent client that checks what landed (tests/hosts/start-s3.sh, which also installs them when missing).
    Install-DebianPackage -Package @('ceph-mon', 'ceph-mgr', 'ceph-osd', 'radosgw', 'ceph-common', 's3cmd', 'uuid-runtime') -Command @('ceph-mon', 'ceph-mgr', 'ceph-osd', 'radosgw', 'ceph', 's3cmd', 'uuidgen')
    if (-not (Test-Path (Get-PesterModulePath))) {
        Write-Host "Restoring Pester $PesterVersion from NuGet"
        Invoke-Native dotnet @('restore', (Join-Path $Root 'tests/Pester/Pester.deps.csproj'), '--verbosity', 'quiet')
    }
}

# The cmdlet assembly is built twice: for netstandard2.0 (Windows PowerShell 5.1, PowerShell 7.4 and 7.5, any
# platform) and for net10.0 linux-x64 compiled ReadyToRun, which PowerShell 7.6+ on Linux x64 loads: precompiled, a
# process starts about 0.4 s sooner (docs/decisions.md). VmCheckpoint.psm1 picks one when the module is imported.
$Flavours = @(
    @{ Name = 'netstandard2.0'; Arguments = @('-f', 'netstandard2.0') }
    @{ Name = 'net10.0-linux-x64'; Arguments = @('-f', 'net10.0', '-r', 'linux-x64', '--self-contained', 'false', '-p:PublishReadyToRun=true') }
)

function Invoke-Build {
    if (Test-Path $ModuleOut) { Remove-Item $ModuleOut -Recurse -Force }
    New-Item -ItemType Directory -Path $ModuleOut | Out-Null
    foreach ($flavour in $Flavours) {
        $publish = Join-Path $Out "publish/$($flavour.Name)"
        if (Test-Path $publish) { Remove-Item $publish -Recurse -Force }
        Invoke-Native dotnet (@('publish', (Join-Path $Root 'src/VmCheckpoint.PowerShell/VmCheckpoint.PowerShell.csproj'),
            '-c', $Configuration, '-o', $publish, '--nologo', '--verbosity', 'quiet') + $flavour.Arguments)
        $target = New-Item -ItemType Directory -Path (Join-Path $ModuleOut $flavour.Name)
        # PowerShell loads the engine's own copy of these; shipping them only matters on Windows PowerShell 5.1.
        Get-ChildItem $publish -Filter *.dll | Where-Object Name -NotLike 'System.Management.Automation*' | Copy-Item -Destination $target
    }
    # The export server (a process of its own that serves checkpoints over NBD) runs beside the net10.0 cmdlet assembly,
    # sharing its VmCheckpoint.Core.dll; the netstandard2.0 flavour starts the same one.
    $servePublish = Join-Path $Out 'publish/serve'
    if (Test-Path $servePublish) { Remove-Item $servePublish -Recurse -Force }
    Invoke-Native dotnet @('publish', (Join-Path $Root 'src/VmCheckpoint.Serve/VmCheckpoint.Serve.csproj'), '-c', $Configuration, '-o', $servePublish,
        '-f', 'net10.0', '-r', 'linux-x64', '--self-contained', 'false', '-p:PublishReadyToRun=true', '--nologo', '--verbosity', 'quiet')
    Get-ChildItem $servePublish -Filter 'VmCheckpoint.Serve.*' | Where-Object Extension -in '.dll', '.json' |
        Copy-Item -Destination (Join-Path $ModuleOut 'net10.0-linux-x64')
    Copy-Item (Join-Path $Root 'VmCheckpoint.psd1'), (Join-Path $Root 'module/VmCheckpoint.psm1') $ModuleOut
    Copy-Item (Join-Path $Root 'module/*.ps1xml') $ModuleOut
    $help = Join-Path $ModuleOut 'en-US'
    New-Item -ItemType Directory -Path $help | Out-Null
    Copy-Item (Join-Path $Root 'module/en-US/*') $help
    # The MAML help is generated from module/help/*.psd1 and the cmdlets' own metadata, in a child process
    # so that this one never loads (and locks) the module it builds.
    Invoke-Native dotnet @('pwsh', '-NoProfile', '-NonInteractive', '-File', (Join-Path $Root 'module/help/Build-Help.ps1'),
        '-ModulePath', $ModuleOut, '-SourcePath', (Join-Path $Root 'module/help'))
    # Each assembly's folder has its MAML help beside it: PowerShell looks for a cmdlet's help where its assembly is.
    foreach ($flavour in $Flavours) {
        $flavourHelp = New-Item -ItemType Directory -Path (Join-Path $ModuleOut "$($flavour.Name)/en-US")
        Copy-Item (Join-Path $help 'VmCheckpoint.PowerShell.dll-Help.xml') $flavourHelp
    }
    Write-Host "Built $ModuleOut"
}

function Get-TrxCounts([string] $Path) {
    [xml] $trx = Get-Content -Raw $Path
    $c = $trx.TestRun.ResultSummary.Counters
    $failedNames = @($trx.TestRun.Results.UnitTestResult | Where-Object outcome -ne 'Passed' | Where-Object outcome -ne 'NotExecuted' |
        ForEach-Object { "$($_.testName): $(("$($_.Output.ErrorInfo.Message)" -split "`n")[0])" })
    [pscustomobject]@{ Passed = [int]$c.passed; Failed = [int]$c.failed + [int]$c.error + [int]$c.timeout + [int]$c.aborted; Skipped = [int]$c.notExecuted; FailedNames = $failedNames }
}

# The engine's xunit tests; returns their counts (a build or runner failure counts as a failed test).
function Invoke-Xunit([string] $Results) {
    Write-Host '== xunit (VmCheckpoint.Core) =='
    & dotnet test (Join-Path $Root 'tests/VmCheckpoint.Core.Tests/VmCheckpoint.Core.Tests.csproj') -c $Configuration --nologo `
        --logger 'trx;LogFileName=xunit.trx' --logger 'console;verbosity=minimal' --results-directory $Results | Out-Host
    $xunitExit = $LASTEXITCODE
    $trx = Join-Path $Results 'xunit.trx'
    $xunit = if (Test-Path $trx) { Get-TrxCounts $trx } else { [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0 } }
    if ($xunitExit -ne 0 -and $xunit.Failed -eq 0) { $xunit.Failed = 1 }
    $xunit
}

# The failed tests again at the end of a long run, where a CI log's tail shows them.
function Write-FailedNames([object[]] $Names) {
    $named = @($Names | Where-Object { $_ })
    if ($named.Count -eq 0) { return }
    Write-Host 'Failed:'
    foreach ($name in $named) { Write-Host "  $name" }
}

function New-ResultsFolder {
    $results = Join-Path $Out 'test-results'
    if (Test-Path $results) { Remove-Item $results -Recurse -Force }
    New-Item -ItemType Directory -Path $results | Out-Null
    $results
}

function Invoke-UnitTest {
    Invoke-Bootstrap
    $xunit = Invoke-Xunit (New-ResultsFolder)
    Write-FailedNames $xunit.FailedNames
    Write-Host "Tests: $($xunit.Passed) passed, $($xunit.Failed) failed, $($xunit.Skipped) skipped"
    if ($xunit.Failed -gt 0) { exit 1 }
}

function Invoke-Test {
    Invoke-Bootstrap
    Invoke-Build
    $results = New-ResultsFolder
    $xunit = Invoke-Xunit $results

    # The live tests drive real VMs on this host's libvirt (started here when there is no systemd to do it).
    Invoke-Native bash @((Join-Path $Root 'tests/hosts/start-libvirt.sh'))

    Write-Host '== Pester (cmdlets, against out/VmCheckpoint) =='
    $pesterJson = Join-Path $results 'pester.json'
    & dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $Root 'tests/Pester/Invoke-PesterSuite.ps1') `
        -PesterPath (Get-PesterModulePath) -ModulePath $ModuleOut -ResultPath $pesterJson
    $pesterExit = $LASTEXITCODE
    $pester = if (Test-Path $pesterJson) { Get-Content -Raw $pesterJson | ConvertFrom-Json } else { [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0 } }
    if ($pesterExit -ne 0 -and $pester.Failed -eq 0) { $pester.Failed = 1 }

    $passed = $xunit.Passed + $pester.Passed
    $failed = $xunit.Failed + $pester.Failed
    $skipped = $xunit.Skipped + $pester.Skipped
    Write-FailedNames (@($xunit.FailedNames) + @($pester.FailedNames))
    Write-Host "xunit: $($xunit.Passed) passed, $($xunit.Failed) failed, $($xunit.Skipped) skipped; Pester: $($pester.Passed) passed, $($pester.Failed) failed, $($pester.Skipped) skipped"
    Write-Host "Tests: $passed passed, $failed failed, $skipped skipped"
    if ($failed -gt 0) { exit 1 }
}

function Invoke-Package {
    Invoke-Build
    $manifest = Import-PowerShellDataFile (Join-Path $Root 'VmCheckpoint.psd1')
    $zip = Join-Path $Out "VmCheckpoint-$($manifest.ModuleVersion).zip"
    if (Test-Path $zip) { Remove-Item $zip }
    Compress-Archive -Path $ModuleOut -DestinationPath $zip
    Write-Host "Packaged $zip"
    # The .nupkg a PowerShell repository serves (Install-PSResource VmCheckpoint), made by PSResourceGet itself through
    # a folder repository registered for the moment.
    $feed = Join-Path $Out 'feed'
    if (Test-Path $feed) { Remove-Item $feed -Recurse -Force }
    New-Item -ItemType Directory -Path $feed | Out-Null
    $name = 'VmCheckpointBuild' + [guid]::NewGuid().ToString('N').Substring(0, 8)
    Register-PSResourceRepository -Name $name -Uri $feed -Trusted
    try { Publish-PSResource -Path $ModuleOut -Repository $name }
    finally { Unregister-PSResourceRepository -Name $name }
    $nupkg = Get-ChildItem $feed -Filter '*.nupkg' | Move-Item -Destination $Out -Force -PassThru
    Remove-Item $feed -Recurse -Force
    Write-Host "Packaged $($nupkg.FullName)"
}

function Invoke-Bench {
    Invoke-Bootstrap
    Invoke-Build
    Invoke-Native dotnet @('pwsh', '-NoProfile', '-NonInteractive', '-File', (Join-Path $Root 'bench/Invoke-Benchmark.ps1'),
        '-ModulePath', $ModuleOut, '-VirtualGiB', $BenchVirtualGiB, '-DataGiB', $BenchDataGiB)
    # The same image's checkpoints into S3 (radosgw, tests/hosts/start-s3.sh) against a local folder.
    Invoke-Native dotnet @('pwsh', '-NoProfile', '-NonInteractive', '-File', (Join-Path $Root 'bench/Invoke-S3Benchmark.ps1'),
        '-ModulePath', $ModuleOut, '-VirtualGiB', $BenchVirtualGiB, '-DataGiB', $BenchDataGiB)
}

# The reliability suite at larger counts (kill -9 at 120 instants, 120 flipped bytes, ...); what it measured is
# printed and added to docs/figures.md. The ordinary test run has the same suite at small counts.
function Invoke-Reliability {
    Invoke-Bootstrap
    Invoke-Build
    Invoke-Native bash @((Join-Path $Root 'tests/hosts/start-libvirt.sh'))
    $results = New-ResultsFolder
    $figures = Join-Path $results 'reliability.json'
    $env:VMCHECKPOINT_RELIABILITY_COUNT = if ($env:VMCHECKPOINT_RELIABILITY_COUNT) { $env:VMCHECKPOINT_RELIABILITY_COUNT } else { '120' }
    $env:VMCHECKPOINT_RELIABILITY_FIGURES = $figures
    & dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $Root 'tests/Pester/Invoke-PesterSuite.ps1') `
        -PesterPath (Get-PesterModulePath) -ModulePath $ModuleOut -ResultPath (Join-Path $results 'pester.json') -Only Reliability
    $exit = $LASTEXITCODE
    if (Test-Path $figures) {
        $json = Get-Content -Raw $figures
        $section = "`n## build.ps1 Reliability, count $($env:VMCHECKPOINT_RELIABILITY_COUNT) ($((Get-Date).ToString('yyyy-MM-dd')))`n`n``````json`n$($json.Trim())`n```````n"
        Add-Content -Path (Join-Path $Root 'docs/figures.md') -Value $section
        Write-Host $section
    }
    if ($exit -ne 0) { exit 1 }
}

function Invoke-Demo {
    Invoke-Bootstrap
    Invoke-Build
    Invoke-Native dotnet @('pwsh', '-NoProfile', '-NonInteractive', '-File', (Join-Path $Root 'bench/Show-Demo.ps1'), '-ModulePath', $ModuleOut)
}

Push-Location $Root
try {
    foreach ($t in $Task) {
        switch ($t) {
            'Bootstrap' { Invoke-Bootstrap }
            'Build' { Invoke-Build }
            'UnitTest' { Invoke-UnitTest }
            'Test' { Invoke-Test }
            'Bench' { Invoke-Bench }
            'Package' { Invoke-Package }
            'Reliability' { Invoke-Reliability }
            'Demo' { Invoke-Demo }
        }
    }
}
finally {
    Pop-Location
}
