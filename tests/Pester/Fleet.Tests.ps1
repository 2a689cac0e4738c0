# Two hosts sharing one repository in S3: the host's own libvirtd and a second system-mode libvirtd in its own mount
# namespace (tests/hosts/start-libvirt.sh second), each with its own catalog, checkpoint their running VMs into the same
# bucket of a real radosgw (tests/hosts/start-s3.sh), find each other's checkpoints through their catalogs' rebuild
# from the repository, and restore each other's VMs.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:savedAws = @{}
    foreach ($name in 'AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION') { $savedAws[$name] = [Environment]::GetEnvironmentVariable($name) }
    $script:s3 = Start-TestS3Gateway
    $script:work = New-TestFolder
    & chmod 755 $work
    $script:bucket = 'vmckpt-fleet-' + [guid]::NewGuid().ToString('N').Substring(0, 10)
    $script:repo = "s3://$bucket/fleet"
    New-VmCheckpointRepository -Path $repo | Out-Null
    $script:uriA = & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh')
    if ($LASTEXITCODE -ne 0 -or -not $uriA) { $script:uriA = 'qemu:///system' }
    $script:secondRoot = Join-Path ([IO.Path]::GetTempPath()) ("vmckpt-fleet-host2-" + [guid]::NewGuid().ToString('N').Substring(0, 6))
    $script:uriB = & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh') second $secondRoot
    $script:catalogA = Join-Path $work 'host-a.db'
    $script:catalogB = Join-Path $work 'host-b.db'
    $script:prefix = 'vmckpt-fleet-' + [guid]::NewGuid().ToString('N').Substring(0, 6) + '-'
    $script:vmA = $prefix + 'a'
    $script:vmB = $prefix + 'b'
    function script:New-Disk([string] $Name, [int] $Seed) {
        $path = New-TestImage -Path (Join-Path $work $Name) -Size 32MB -Offsets 0, 9MB, 20MB -Seed $Seed
        & chmod 666 $path
        $path
    }
    $script:diskA = New-Disk 'a.qcow2' 71
    $script:diskB = New-Disk 'b.qcow2' 72
    New-TestVm -Name $vmA -DiskPath $diskA -Uri $uriA
    New-TestVm -Name $vmB -DiskPath $diskB -Uri $uriB
}
AfterAll {
    foreach ($vm in $vmA, $vmB) { foreach ($uri in $uriA, $uriB) { if ($vm -and $uri) { Remove-TestVm -Name $vm -Uri $uri } } }
    if ($script:secondRoot) { & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh') stop $secondRoot }
    if ($script:s3) { & s3cmd -c $s3.S3cfg rb --recursive --force "s3://$bucket" *> $null }
    if ($script:work) { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }
    if ($script:secondRoot) { Remove-Item $secondRoot -Recurse -Force -ErrorAction SilentlyContinue }
    if ($script:savedAws) { foreach ($name in $savedAws.Keys) { [Environment]::SetEnvironmentVariable($name, $savedAws[$name]) } }
}

Describe 'Two libvirt hosts sharing one repository in S3' {
    It 'each host checkpoints its own running VM into the bucket, with its own catalog' {
        $script:takenA = Invoke-VmCheckpoint -Name $vmA -ConnectionUri $uriA -Repository $repo -CatalogPath $catalogA
        $script:takenB = Invoke-VmCheckpoint -Name $vmB -ConnectionUri $uriB -Repository $repo -CatalogPath $catalogB
        $takenA.Hypervisor | Should -Be 'Libvirt'
        $takenB.Hypervisor | Should -Be 'Libvirt'
        $takenA.ChangedBytes | Should -Be 3MB
        $takenB.ChangedBytes | Should -Be 3MB
        Copy-VmDisk -Name $vmA -Source $diskA -Destination (Join-Path $work 'a-at-checkpoint.qcow2') -Uri $uriA
        Copy-VmDisk -Name $vmB -Source $diskB -Destination (Join-Path $work 'b-at-checkpoint.qcow2') -Uri $uriB
        @(Get-S3Objects $repo | Where-Object Key -like 'checkpoints/*.json').Count | Should -Be 2
    }

    It 'each host''s catalog finds the other host''s checkpoint in the repository' {
        $seenByA = Get-VmCheckpoint -Repository $repo -CatalogPath $catalogA
        $seenByB = Get-VmCheckpoint -Repository $repo -CatalogPath $catalogB
        $seenByA.Id | Sort-Object | Should -Be (@($takenA.Id, $takenB.Id) | Sort-Object)
        $seenByB.Id | Sort-Object | Should -Be (@($takenA.Id, $takenB.Id) | Sort-Object)
        # A third catalog, made from nothing, is rebuilt whole from the bucket.
        (Get-CheckpointedVm -Repository $repo -CatalogPath (Join-Path $work 'fresh.db')).Name | Sort-Object | Should -Be (@($vmA, $vmB) | Sort-Object)
    }

    It 'host B restores host A''s VM, defined and running on host B' {
        $dest = Join-Path $work 'a-on-b'
        $r = Restore-VmCheckpoint -Name $vmA -Id $takenA.Id -Destination $dest -ConnectionUri $uriB -Register -Repository $repo -CatalogPath $catalogB
        $r.Registered | Should -BeTrue
        $path = $r.Disks[0].Path
        Test-SameImage (Join-Path $work 'a-at-checkpoint.qcow2') $path | Should -BeTrue
        & virsh -c $uriB start $vmA | Out-Null
        $LASTEXITCODE | Should -Be 0
        Get-DomState $vmA $uriB | Should -Match 'running'
        (& virsh -c $uriB domblklist $vmA) | Out-String | Should -Match ([regex]::Escape($path))
    }

    It 'host A restores host B''s VM, defined and running on host A' {
        $dest = Join-Path $work 'b-on-a'
        $r = Restore-VmCheckpoint -Name $vmB -Id $takenB.Id -Destination $dest -ConnectionUri $uriA -Register -Repository $repo -CatalogPath $catalogA
        $r.Registered | Should -BeTrue
        Test-SameImage (Join-Path $work 'b-at-checkpoint.qcow2') $r.Disks[0].Path | Should -BeTrue
        & virsh -c $uriA start $vmB | Out-Null
        $LASTEXITCODE | Should -Be 0
        Get-DomState $vmB $uriA | Should -Match 'running'
    }
}
