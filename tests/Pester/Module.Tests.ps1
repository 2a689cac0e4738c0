BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    $disk = New-TestImage -Path (Join-Path $work 'c.qcow2') -Size 8MB -Offsets 0
    $script:ck = Invoke-VmCheckpoint -Name "web server 01" -DiskPath $disk -Repository $repo
    Invoke-VmCheckpoint -Name 'db01' -DiskPath $disk -Repository $repo | Out-Null
    $script:cmdlets = (Get-Command -Module VmCheckpoint).Name
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'The module' {
    It 'exports the documented cmdlets with approved verbs' {
        $cmdlets | Should -Contain 'Invoke-VmCheckpoint'
        $cmdlets | Should -Contain 'Restore-VmCheckpoint'
        $approved = (Get-Verb).Verb
        foreach ($c in $cmdlets) { $approved | Should -Contain ($c -split '-')[0] }
    }

    It 'has help with examples for every cmdlet' {
        foreach ($c in $cmdlets) {
            $help = Get-Help $c -Full
            $help.Synopsis | Should -Not -BeLike "*$c*[[]*"   # a real synopsis, not the generated syntax
            @($help.Examples.Example).Count | Should -BeGreaterThan 0 -Because "$c needs examples"
            foreach ($p in $help.Parameters.Parameter) { "$($p.Description.Text)" | Should -Not -BeNullOrEmpty -Because "$c -$($p.Name) needs a description" }
        }
        Get-Help Invoke-VmCheckpoint -Examples | Out-String | Should -Match 'Invoke-VmCheckpoint -Name web01'
        Get-Help about_VmCheckpoint | Out-String | Should -Match 'VMCHECKPOINT_REPOSITORY'
    }

    It 'completes VM names, quoting names with spaces' {
        $line = "Get-VmCheckpoint -Repository '$repo' -Name we"
        $r = TabExpansion2 -inputScript $line -cursorColumn $line.Length
        $r.CompletionMatches.CompletionText | Should -Be "'web server 01'"
        $line = "Restore-VmCheckpoint -Repository '$repo' -Name "
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be @('db01', "'web server 01'")
    }

    It 'completes checkpoint ids of the named VM' {
        $line = "Restore-VmCheckpoint -Repository '$repo' -Name 'web server 01' -Id "
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be $ck.Id
    }
}
