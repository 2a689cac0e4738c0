BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    $script:disk = New-TestImage -Path (Join-Path $work 'j.qcow2') -Size 8MB -Offsets 0
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'Get-VmCheckpointJob' {
    It 'logs successful and failed runs with their error, newest first' {
        $c = Invoke-VmCheckpoint -Name jobs -DiskPath $disk -Repository $repo
        $garbage = Join-Path $work 'garbage.qcow2'
        [IO.File]::WriteAllBytes($garbage, [byte[]](0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 9) + [byte[]]::new(200))
        { Invoke-VmCheckpoint -Name jobs -DiskPath $garbage -Repository $repo -ErrorAction Stop } | Should -Throw
        $jobs = Get-VmCheckpointJob -Name jobs -Repository $repo
        $jobs.Count | Should -Be 2
        $jobs[0].Result | Should -Be 'Failed'
        $jobs[0].Error | Should -BeLike '*garbage.qcow2*'
        $jobs[1].Result | Should -Be 'Succeeded'
        $jobs[1].CheckpointId | Should -Be $c.Id
        $jobs[1].End | Should -BeGreaterOrEqual $jobs[1].Start
        (Get-VmCheckpointJob -Result Failed -Repository $repo).Count | Should -Be 1
        (Get-VmCheckpointJob -Last 1 -Repository $repo).Result | Should -Be 'Failed'
    }
}
