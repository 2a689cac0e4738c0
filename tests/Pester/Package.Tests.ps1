# The module as an admin gets it from a PowerShell repository: published to a folder repository with PSResourceGet,
# installed by name, imported by name. The install runs in a child pwsh whose HOME is a temporary folder, so the
# machine's own modules and repositories are not touched.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:work = New-TestFolder
    $script:module = Get-TestModulePath
    $script:feed = New-Item -ItemType Directory -Path (Join-Path $work 'feed')
    $script:repoName = 'VmCheckpointTest' + [guid]::NewGuid().ToString('N').Substring(0, 8)
}
AfterAll {
    Unregister-PSResourceRepository -Name $repoName -ErrorAction SilentlyContinue
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'The module in a PowerShell repository' {
    It 'publishes to a folder repository with Publish-PSResource' {
        Register-PSResourceRepository -Name $repoName -Uri $feed.FullName -Trusted
        Publish-PSResource -Path $module -Repository $repoName -ErrorAction Stop
        $package = @(Get-ChildItem $feed -Filter 'VmCheckpoint.*.nupkg')
        $package.Count | Should -Be 1
        $manifest = Import-PowerShellDataFile (Join-Path $module 'VmCheckpoint.psd1')
        $package[0].Name | Should -Be "VmCheckpoint.$($manifest.ModuleVersion).nupkg"
        $manifest.PrivateData.PSData.Tags | Should -Contain 'KVM'
        $manifest.PrivateData.PSData.ReleaseNotes | Should -Not -BeNullOrEmpty
    }

    It 'installs by name with Install-PSResource and imports by name' {
        $home2 = New-Item -ItemType Directory -Path (Join-Path $work 'home')
        $script = @"
`$ErrorActionPreference = 'Stop'
Register-PSResourceRepository -Name local -Uri '$($feed.FullName)' -Trusted
Install-PSResource -Name VmCheckpoint -Repository local -TrustRepository -Scope CurrentUser
Import-Module VmCheckpoint
`$m = Get-Module VmCheckpoint
"`$(`$m.ModuleBase)|`$((Get-Command -Module VmCheckpoint).Count)|`$((Get-Command Invoke-VmCheckpoint).Parameters.ContainsKey('IncludeMemory'))"
"@
        $pwsh = Get-PwshCommand
        $env:HOME_BEFORE = $env:HOME
        try {
            $env:HOME = $home2.FullName
            $out = & $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -Command $script 2>&1
        }
        finally { $env:HOME = $env:HOME_BEFORE }
        $LASTEXITCODE | Should -Be 0 -Because "$out"
        $base, $count, $hasMemory = ("$($out | Select-Object -Last 1)" -split '\|')
        $base | Should -BeLike "$($home2.FullName)*"
        [int]$count | Should -BeGreaterThan 10
        $hasMemory | Should -Be 'True'
    }
}
