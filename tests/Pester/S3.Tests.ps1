# The repository in S3 on a real Ceph: radosgw (Ceph's S3 gateway) on 127.0.0.1 over a one-node Ceph cluster, both
# started by tests/hosts/start-s3.sh (which installs Ceph's Debian packages when they are missing). Every object the
# module writes goes through the S3 API to radosgw; the tests check what landed with s3cmd, an independent client.
# The same scenario as Share.Tests.ps1: checkpoints, two writers at once, reclaiming, verifying, restoring, and an
# unreachable gateway. No mock or fake S3 anywhere.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    # Fails here, with start-s3.sh's reason, rather than passing without a gateway. Sets AWS_* for this process and
    # the child processes it starts.
    $script:savedAws = @{}
    foreach ($name in 'AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION') { $savedAws[$name] = [Environment]::GetEnvironmentVariable($name) }
    $script:s3 = Start-TestS3Gateway
    $script:work = New-TestFolder
    $script:savedCatalog = $env:VMCHECKPOINT_CATALOG
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:bucket = 'vmckpt-pester-' + [guid]::NewGuid().ToString('N').Substring(0, 10)
    $script:repo = "s3://$bucket/fleet/repo"
    # 32 MiB qcow2, 8 one-MiB blocks of random data (random: nothing compresses or deduplicates away).
    $script:web = New-TestImage -Path (Join-Path $work 'web.qcow2') -Size 32MB -Offsets 0, 3MB, 4MB, 9MB, 15MB, 16MB, 22MB, 31MB -Seed 11
    $script:taken = [ordered]@{}
    function script:Save-Source([string] $Tag) {
        $copy = Join-Path $work "web-$Tag.qcow2"
        Copy-Item $web $copy
        $copy
    }
    function script:Get-PackBytes { [long](@(Get-S3Objects $repo | Where-Object Key -like 'packs/*.pack') | Measure-Object Length -Sum).Sum }
    # The catalog's own view, read without synchronizing it with the repository first.
    function script:Get-CatalogIds([string] $Path, [string] $RepositoryId) {
        $catalog = [VmCheckpoint.Core.Catalog.CheckpointCatalog]::new($Path)
        try { @($catalog.GetCheckpoints($RepositoryId, $null).Id | Sort-Object) } finally { $catalog.Dispose() }
    }
    # Unfinished multipart uploads under the repository, as s3cmd sees them (none once every run has ended).
    function script:Get-UnfinishedUploads { @(Invoke-S3cmd multipart "s3://$bucket" | Where-Object { "$_" -like "*s3://$bucket/fleet/repo/*" }) }
}
AfterAll {
    # radosgw and Ceph stay running for the next run (start-s3.sh is idempotent); what this run wrote goes.
    if ($script:s3) {
        Start-TestS3Gateway | Out-Null
        & s3cmd -c $s3.S3cfg rb --recursive --force "s3://$bucket" *> $null
    }
    if ($script:work) { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }
    $env:VMCHECKPOINT_CATALOG = $script:savedCatalog
    if ($script:savedAws) { foreach ($name in $savedAws.Keys) { [Environment]::SetEnvironmentVariable($name, $savedAws[$name]) } }
}

Describe 'A repository in S3 (Ceph radosgw)' {
    It 'is created in a new bucket: s3cmd finds its configuration' {
        $r = New-VmCheckpointRepository -Path $repo
        $r.Path | Should -Be $repo
        $config = Join-Path $work 'config.json'
        Invoke-S3cmd get --force "$repo/vmcheckpoint-repository.json" $config | Out-Null
        (Get-Content -Raw $config | ConvertFrom-Json).id | Should -Be $r.Id
        # An object store has no folders to make: the configuration is the only object.
        @(Get-S3Objects $repo).Key | Should -Be 'vmcheckpoint-repository.json'
    }

    It 'refuses a second repository at the same address, and a bucket name S3 does not allow' {
        { New-VmCheckpointRepository -Path $repo -ErrorAction Stop } | Should -Throw -ErrorId 'NewRepository.LocationNotEmpty*'
        $failure = $null
        try { New-VmCheckpointRepository -Path 's3://Bad_Bucket/x' -ErrorAction Stop } catch { $failure = $_ }
        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$failure" | Should -Match 'not a valid S3 bucket name'
    }

    It 'takes a checkpoint whose blocks land in the bucket' {
        $c = Invoke-VmCheckpoint -Name web -DiskPath $web -Repository $repo
        $c.ChangedBytes | Should -Be 8MB
        $c.StoredBytes | Should -BeGreaterThan (8MB * 0.99)
        Get-PackBytes | Should -BeGreaterOrEqual $c.StoredBytes
        @(Get-S3Objects $repo | Where-Object Key -like "checkpoints/*_$($c.Id).json").Count | Should -Be 1
        $taken[$c.Id] = Save-Source 1
    }

    It 'stores only the changed blocks in the second checkpoint' {
        # 64 KiB writes into three of the eight blocks.
        Write-TestData -Path $web -Offsets (3MB + 64KB), (9MB + 512KB), (22MB + 192KB) -Length 64KB -Seed 12
        $before = Get-PackBytes
        $c = Invoke-VmCheckpoint -Name web -DiskPath $web -Repository $repo
        $c.ParentId | Should -Be @($taken.Keys)[0]
        $c.ChangedBytes | Should -Be 3MB
        $c.StoredBytes | Should -BeGreaterThan 2MB
        $c.StoredBytes | Should -BeLessOrEqual (3MB + 4KB)
        (Get-PackBytes) - $before | Should -BeLessOrEqual (3MB + 64KB)
        $taken[$c.Id] = Save-Source 2
    }

    It 'leaves whole objects only: no lock, no unfinished upload' {
        $objects = @(Get-S3Objects $repo)
        @($objects | Where-Object Key -like 'packs/*.pack').Count | Should -BeGreaterOrEqual 2
        @($objects | Where-Object Key -like 'index/*.idx').Count | Should -BeGreaterOrEqual 2
        @($objects | Where-Object Key -like 'locks/*').Count | Should -Be 0
        Get-UnfinishedUploads | Should -BeNullOrEmpty
    }

    It 'restores both checkpoints equal to the image at their instant' {
        foreach ($id in @($taken.Keys)) {
            $dest = Join-Path $work "restore-$id"
            $r = Restore-VmCheckpoint -Name web -Id $id -Destination $dest -Repository $repo
            Test-SameImage $taken[$id] $r.Path | Should -BeTrue -Because "checkpoint $id restores"
            Test-ImageChecks $r.Path | Should -BeTrue
            Remove-Item $dest -Recurse -Force
        }
    }

    It 'reads every block back healthy' {
        $verdicts = Test-VmCheckpoint -Repository $repo -ReadData
        @($verdicts).Count | Should -Be 2
        $verdicts.Status | Sort-Object -Unique | Should -Be 'Healthy'
    }

    It 'shows every checkpoint to a second host with its own catalog' {
        $other = Join-Path $work 'host2.db'
        $ids = (Get-VmCheckpoint -Repository $repo -CatalogPath $other).Id | Sort-Object
        $ids | Should -Be (@($taken.Keys) | Sort-Object)
        (Get-CheckpointedVm -Name web -Repository $repo -CatalogPath $other).CheckpointCount | Should -Be 2
    }

    It 'finds a damaged pack that s3cmd replaced behind its back' {
        # An object changed by someone else (here: rewritten by s3cmd with one byte flipped) is found by verification.
        $victim = Join-Path $work 'scratch'
        New-Item -ItemType Directory $victim | Out-Null
        $repo2 = "s3://$bucket/fleet/damaged"
        New-VmCheckpointRepository -Path $repo2 | Out-Null
        $small = New-TestImage -Path (Join-Path $victim 'small.qcow2') -Size 4MB -Offsets 0 -Seed 31
        Invoke-VmCheckpoint -Name small -DiskPath $small -Repository $repo2 | Out-Null
        $pack = @(Get-S3Objects $repo2 | Where-Object Key -like 'packs/*.pack')[0].Key
        $file = Join-Path $victim 'pack'
        Invoke-S3cmd get --force "$repo2/$pack" $file | Out-Null
        $bytes = [IO.File]::ReadAllBytes($file)
        $bytes[100] = $bytes[100] -bxor 0xFF
        [IO.File]::WriteAllBytes($file, $bytes)
        Invoke-S3cmd put $file "$repo2/$pack" | Out-Null
        $verdict = Test-VmCheckpoint -Repository $repo2 -ReadData -CatalogPath (Join-Path $victim 'c.db') -ErrorAction SilentlyContinue
        @($verdict | Where-Object Status -eq 'Healthy').Count | Should -Be 0
    }
}

Describe 'Two processes checkpointing into the S3 repository at once' {
    It 'both succeed and lose nothing' {
        # The children inherit AWS_ENDPOINT_URL and the keys from this process.
        Assert-TwoWritersLoseNothing -Work $work -Repository $repo -AlsoThere web
        # The two runs' locks are gone, in the bucket itself.
        @(Get-S3Objects $repo | Where-Object Key -like 'locks/*').Count | Should -Be 0
        Get-UnfinishedUploads | Should -BeNullOrEmpty
    }
}

Describe 'Reclaiming space in the bucket' {
    It 'Remove-VmCheckpoint -KeepLast 1 frees space in Ceph, and what remains restores equal' {
        $before = Get-PackBytes
        $first, $second = @($taken.Keys)
        $result = Remove-VmCheckpoint -Name web -KeepLast 1 -Repository $repo -LockTimeout 30 -Confirm:$false
        $result.RemovedIds | Should -Be $first
        $result.Reclaim.Completed | Should -BeTrue
        # The three blocks the second checkpoint replaced are no longer used by anyone.
        $result.Reclaim.BytesReclaimed | Should -BeGreaterThan 2MB
        Get-PackBytes | Should -BeLessThan ($before - 2MB)
        @(Get-S3Objects $repo | Where-Object Key -like "checkpoints/*_$first.json").Count | Should -Be 0
        (Get-VmCheckpoint -Name web -Repository $repo).Id | Should -Be $second
        $r = Restore-VmCheckpoint -Name web -Id $second -Destination (Join-Path $work 'after-prune') -Repository $repo
        Test-SameImage $taken[$second] $r.Path | Should -BeTrue
        foreach ($name in 'app', 'db') {
            $r = Restore-VmCheckpoint -Name $name -Destination (Join-Path $work "after-prune-$name") -Repository $repo
            Test-SameImage (Join-Path $work "$name.qcow2") $r.Path | Should -BeTrue
        }
        (Test-VmCheckpoint -Repository $repo -ReadData).Status | Sort-Object -Unique | Should -Be 'Healthy'
        @(Get-S3Objects $repo | Where-Object Key -like 'locks/*').Count | Should -Be 0
    }
}

Describe 'Immutable checkpoints: a bucket with S3 Object Lock and -RetainDays' {
    BeforeAll {
        # A bucket of its own, made by New-VmCheckpointRepository with Object Lock. Compliance mode: nobody deletes what
        # it wrote for a day, this test's cleanup included; the image is small so that what stays in Ceph is too.
        $script:lockedBucket = 'vmckpt-lock-' + [guid]::NewGuid().ToString('N').Substring(0, 10)
        $script:lockedRepo = "s3://$lockedBucket/repo"
        $script:small = New-TestImage -Path (Join-Path $work 'small.qcow2') -Size 4MB -Offsets 0, 2MB -Seed 41
        $config = [Amazon.S3.AmazonS3Config]::new()
        $config.ServiceURL = $env:AWS_ENDPOINT_URL
        $config.ForcePathStyle = $true
        $config.RequestChecksumCalculation = 'WHEN_REQUIRED'
        $script:client = [Amazon.S3.AmazonS3Client]::new($env:AWS_ACCESS_KEY_ID, $env:AWS_SECRET_ACCESS_KEY, $config)
        function script:Get-Head([string] $Key) {
            $client.GetObjectMetadataAsync([Amazon.S3.Model.GetObjectMetadataRequest]@{ BucketName = $lockedBucket; Key = "repo/$Key" }).GetAwaiter().GetResult()
        }
    }

    It 'refuses -RetainDays on a bucket without Object Lock, and on a folder, writing nothing' {
        { New-VmCheckpointRepository -Path "s3://$bucket/unlocked" -RetainDays 1 -ErrorAction Stop } | Should -Throw -ErrorId 'NewRepository.InvalidOperation*' -ExpectedMessage "*$bucket*Object Lock*"
        @(Get-S3Objects "s3://$bucket/unlocked").Count | Should -Be 0
        $folder = Join-Path $work 'lockfolder'
        { New-VmCheckpointRepository -Path $folder -RetainDays 1 -ErrorAction Stop } | Should -Throw -ErrorId 'NewRepository.Argument*' -ExpectedMessage '*S3 Object Lock*'
        Test-Path (Join-Path $folder 'vmcheckpoint-repository.json') | Should -BeFalse
    }

    It 'writes packs and manifests retained in compliance mode for the days given' {
        $r = New-VmCheckpointRepository -Path $lockedRepo -RetainDays 1
        $r.RetainDays | Should -Be 1
        $script:kept = Invoke-VmCheckpoint -Name locked -DiskPath $small -Repository $lockedRepo
        $objects = @(Get-S3Objects $lockedRepo)
        $retained = $objects | Where-Object { $_.Key -like 'packs/*' -or $_.Key -like 'checkpoints/*' }
        @($retained).Count | Should -BeGreaterOrEqual 2
        foreach ($o in $retained) {
            $head = Get-Head $o.Key
            "$($head.ObjectLockMode)" | Should -Be 'COMPLIANCE'
            $head.ObjectLockRetainUntilDate.ToUniversalTime() | Should -BeGreaterThan ([datetime]::UtcNow.AddHours(23))
        }
        # Index files are rewritten by reclaiming: never retained.
        "$((Get-Head ($objects | Where-Object Key -like 'index/*' | Select-Object -First 1).Key).ObjectLockMode)" | Should -BeNullOrEmpty
    }

    It 'is kept from deletion by Ceph itself, whatever a client asks' {
        $pack = (Get-S3Objects $lockedRepo | Where-Object Key -like 'packs/*' | Select-Object -First 1).Key
        $version = (Get-Head $pack).VersionId
        { $client.DeleteObjectAsync([Amazon.S3.Model.DeleteObjectRequest]@{ BucketName = $lockedBucket; Key = "repo/$pack"; VersionId = $version }).GetAwaiter().GetResult() } |
            Should -Throw '*object lock*'
    }

    It 'leaves a retained checkpoint and its blocks in place on removal, saying until when, and it still restores' {
        $result = Remove-VmCheckpoint -Id $kept.Id -Repository $lockedRepo -Confirm:$false -WarningVariable warned -WarningAction SilentlyContinue
        $result.RemovedIds | Should -BeNullOrEmpty
        $result.RetainedIds | Should -Be $kept.Id
        "$warned" | Should -BeLike "*$($kept.Id)*Object Lock until*"
        $result.Reclaim.Completed | Should -BeTrue
        (Get-VmCheckpoint -Name locked -Repository $lockedRepo).Id | Should -Be $kept.Id
        $r = Restore-VmCheckpoint -Name locked -Destination (Join-Path $work 'locked-restored') -Repository $lockedRepo
        Test-SameImage $small $r.Path | Should -BeTrue
        (Test-VmCheckpoint -Repository $lockedRepo -ReadData).Status | Should -Be 'Healthy'
    }
}

Describe 'Keys, region and endpoint from a shared AWS profile, as a scheduled run has them' {
    It 'reads the repository with no AWS_* variable set' {
        $aws = Join-Path $work 'aws'
        New-Item -ItemType Directory $aws | Out-Null
        Set-Content (Join-Path $aws 'credentials') "[vmckpt]`naws_access_key_id = $env:AWS_ACCESS_KEY_ID`naws_secret_access_key = $env:AWS_SECRET_ACCESS_KEY"
        Set-Content (Join-Path $aws 'config') "[profile vmckpt]`nregion = us-east-1`nendpoint_url = $env:AWS_ENDPOINT_URL"
        $out = Join-Path $work 'profile.out'
        $child = Start-PwshScript -WorkingDirectory $work -StdErr (Join-Path $work 'profile.err') -Script @"
foreach (`$name in 'AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION') { Remove-Item "env:`$name" -ErrorAction SilentlyContinue }
`$env:AWS_SHARED_CREDENTIALS_FILE = '$(Join-Path $aws 'credentials')'
`$env:AWS_CONFIG_FILE = '$(Join-Path $aws 'config')'
`$env:AWS_PROFILE = 'vmckpt'
`$env:VMCHECKPOINT_CATALOG = '$(Join-Path $work 'profile.db')'
(Get-VmCheckpoint -Repository '$repo').Id | Sort-Object | Set-Content '$out'
"@
        $child.WaitForExit()
        $child.ExitCode | Should -Be 0 -Because (Get-Content (Join-Path $work 'profile.err') -Raw)
        @(Get-Content $out) | Should -Be @((Get-VmCheckpoint -Repository $repo).Id | Sort-Object)
    }
}

Describe 'An unreachable S3 gateway' {
    BeforeAll {
        $config = Join-Path $work 'config-again.json'
        Invoke-S3cmd get --force "$repo/vmcheckpoint-repository.json" $config | Out-Null
        $script:repositoryId = (Get-Content -Raw $config | ConvertFrom-Json).id
        # Brings the catalog in line with the repository, then remembers what it holds.
        $script:known = @((Get-VmCheckpoint -Repository $repo).Id | Sort-Object)
        $script:catalogBefore = Get-CatalogIds $env:VMCHECKPOINT_CATALOG $repositoryId
        $catalogBefore | Should -Be $known
        $known.Count | Should -Be 3
        Stop-TestS3Gateway
    }
    AfterAll { Start-TestS3Gateway | Out-Null }

    It 'gives a ResourceUnavailable error for <Command> naming the endpoint, and leaves the catalog as it was' -ForEach @(
        @{ Command = 'Get-VmCheckpoint'; Run = { Get-VmCheckpoint -Repository $repo } }
        @{ Command = 'Invoke-VmCheckpoint'; Run = { Invoke-VmCheckpoint -Name web -DiskPath $web -Repository $repo } }
        @{ Command = 'Test-VmCheckpoint'; Run = { Test-VmCheckpoint -Repository $repo } }
        @{ Command = 'Restore-VmCheckpoint'; Run = { Restore-VmCheckpoint -Name web -Destination (Join-Path $work 'never') -Repository $repo } }
        @{ Command = 'Remove-VmCheckpoint'; Run = { Remove-VmCheckpoint -Id $known[0] -Repository $repo -Confirm:$false } }
    ) {
        $failure = $null
        try { & $Run -ErrorAction Stop | Out-Null } catch { $failure = $_ }
        $failure | Should -Not -BeNullOrEmpty -Because "$Command must fail while radosgw is down"
        $failure.CategoryInfo.Category | Should -Be 'ResourceUnavailable' -Because "$failure"
        "$failure" | Should -Match ([regex]::Escape($s3.Endpoint))
        "$failure" | Should -Match ([regex]::Escape("s3://$bucket/fleet/repo"))
        Get-CatalogIds $env:VMCHECKPOINT_CATALOG $repositoryId | Should -Be $catalogBefore
    }

    It 'works again, with nothing lost, once radosgw is back' {
        Start-TestS3Gateway | Out-Null
        (Get-VmCheckpoint -Repository $repo).Id | Sort-Object | Should -Be $known
        (Test-VmCheckpoint -Repository $repo).Status | Sort-Object -Unique | Should -Be 'Healthy'
        Get-CatalogIds $env:VMCHECKPOINT_CATALOG $repositoryId | Should -Be $known
    }

    It 'gives the same error for a bucket that does not exist, and PermissionDenied for wrong keys' {
        $failure = $null
        try { Get-VmCheckpoint -Repository "s3://$bucket-gone/repo" -ErrorAction Stop | Out-Null } catch { $failure = $_ }
        $failure.CategoryInfo.Category | Should -Be 'ResourceUnavailable' -Because "$failure"
        "$failure" | Should -Match 'does not exist'
        $secret = $env:AWS_SECRET_ACCESS_KEY
        try {
            $env:AWS_SECRET_ACCESS_KEY = 'wrong' + $secret
            $failure = $null
            try { Get-VmCheckpoint -Repository $repo -CatalogPath (Join-Path $work 'denied.db') -ErrorAction Stop | Out-Null } catch { $failure = $_ }
            $failure.CategoryInfo.Category | Should -Be 'PermissionDenied' -Because "$failure"
            "$failure" | Should -Match 'AWS_SECRET_ACCESS_KEY'
        } finally { $env:AWS_SECRET_ACCESS_KEY = $secret }
    }
}

Describe 'The same scenario in an encrypted repository in S3' {
    It 'loses nothing, reclaims, verifies, restores equal, and names no VM in the bucket' {
        $encrypted = "s3://$bucket/encrypted"
        Assert-EncryptedScenario -Work $work -Repository $encrypted -ObjectNames { (Get-S3Objects $encrypted).Key }
    }
}
