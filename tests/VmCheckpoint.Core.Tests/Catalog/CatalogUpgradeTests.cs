using LiteDB;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Catalog;

/// <summary>Catalogs of earlier versions open with nothing lost; the catalog's defaults put one job log per machine for root.</summary>
public sealed class CatalogUpgradeTests
{
    [Fact]
    public void JobsAndHealthEventsLoggedUnderObjectIdsKeepTheirEntriesAndOrderAsStrings()
    {
        using var t = new TestRepository();
        string path = t.File("old-catalog.db");
        var ids = new List<ObjectId>();
        using (var old = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Shared }))
        {
            var jobs = old.GetCollection("jobs");
            for (int i = 0; i < 3; i++)
            {
                var id = ObjectId.NewObjectId();
                ids.Add(id);
                jobs.Insert(new BsonDocument
                {
                    ["_id"] = id, ["Kind"] = "Checkpoint", ["VmName"] = "vm" + i, ["RepositoryId"] = "r", ["Repository"] = "/r",
                    ["Host"] = "h", ["ProcessId"] = 1, ["Start"] = DateTime.UtcNow.AddMinutes(i), ["Result"] = "Succeeded",
                });
            }
            old.GetCollection("health").Insert(new BsonDocument { ["_id"] = ObjectId.NewObjectId(), ["VmName"] = "vm0", ["Time"] = DateTime.UtcNow });
        }

        using (var catalog = new CheckpointCatalog(path))
        {
            var jobs = catalog.GetJobs().OrderBy(j => j.Start).ToList();
            Assert.Equal(ids.Select(i => i.ToString()), jobs.Select(j => j.Id));
            Assert.Equal(new[] { "vm0", "vm1", "vm2" }, jobs.Select(j => j.VmName));
            var started = catalog.StartJob("Restore", "vm3", null);
            catalog.FinishJob(started, JobResult.Succeeded);
            Assert.Matches("^[0-9a-f]{24}$", started.Id);
            Assert.Equal(4, catalog.GetJobs().Count);
        }
        using (var again = new CheckpointCatalog(path)) Assert.Equal(4, again.GetJobs().Count);
    }

    [Fact]
    public void ARootUsersOwnCatalogIsAdoptedMachineWideOnceAndNeverOverwritten()
    {
        using var t = new TestRepository();
        string older = t.File("user/catalog.db");
        string machineWide = t.File("var/lib/vmcheckpoint/catalog.db");
        using (var c = new CheckpointCatalog(older)) c.FinishJob(c.StartJob("Checkpoint", "kept", null), JobResult.Succeeded);

        CatalogLocation.AdoptOlderCatalog(older, machineWide);
        using (var c = new CheckpointCatalog(machineWide))
        {
            Assert.Equal("kept", Assert.Single(c.GetJobs()).VmName);
            c.FinishJob(c.StartJob("Checkpoint", "new", null), JobResult.Succeeded);
        }
        CatalogLocation.AdoptOlderCatalog(older, machineWide); // the machine-wide one exists: left as it is
        using (var c = new CheckpointCatalog(machineWide)) Assert.Equal(2, c.GetJobs().Count);
    }
}
