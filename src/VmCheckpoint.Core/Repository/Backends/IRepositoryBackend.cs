using System;
using System.Collections.Generic;
using System.IO;

namespace VmCheckpoint.Core.Repository.Backends
{
    /// <summary>
    /// Where a repository's bytes live: named objects that are put whole, read by range, listed by prefix and deleted.
    /// It knows nothing of packs, indexes, manifests or locks; the repository above it relies only on what is written
    /// here, and every backend (a folder, a share, an object store) must give all of it.
    /// </summary>
    /// <remarks>
    /// <para><b>Names.</b> Relative, '/'-separated, case-sensitive keys (<c>packs/ab/ab01….pack</c>); segments are
    /// non-empty and never <c>.</c> or <c>..</c>; a name never ends in <c>.tmp</c> (reserved for a backend's own
    /// leftovers). A backend throws <see cref="ArgumentException"/> for a name outside these rules.</para>
    /// <para><b>Atomic, durable, put once.</b> <see cref="Put"/> and <see cref="IObjectWriter.Commit"/> make an
    /// object visible whole or not at all: no reader, lister or other process ever sees part of one, whether the write
    /// fails (disk full, an I/O error, a share that stops answering) or the process is killed at any byte. When they
    /// return, the object is on stable storage and survives a crash of this host. An object never changes once
    /// visible: putting a name that exists throws <see cref="ObjectExistsException"/> and leaves the existing object
    /// as it was. A write that never committed may leave a leftover (a temporary file, an unfinished upload) that is
    /// never listed, read or counted as an object, and that <see cref="RemoveAbandoned"/> removes.</para>
    /// <para><b>Read after write.</b> Once <see cref="Put"/>, <see cref="IObjectWriter.Commit"/> or
    /// <see cref="Delete"/> has returned, every later call of any thread or process sees it, <see cref="List"/>
    /// included. A listing that lagged behind writes would let reclaiming miss a new checkpoint and delete blocks it
    /// uses: a store whose listings lag must wait its lag out inside <see cref="List"/>.</para>
    /// <para><b>Unreachable is an error, never empty.</b> Every call throws <see cref="IOException"/> (or
    /// <see cref="UnauthorizedAccessException"/>) when the location cannot be reached or read. Only a missing object is
    /// an answer: <see cref="GetInfo"/> returns null, <see cref="OpenRead"/> throws <see cref="ObjectNotFoundException"/>,
    /// <see cref="List"/> leaves it out, <see cref="Delete"/> does nothing. A folder that cannot be read taken for an
    /// empty one would make the catalog forget every checkpoint and reclaiming delete every pack.</para>
    /// <para><b>Threads.</b> Every method may be called from many threads at once; one reader or writer is used by
    /// one thread at a time.</para>
    /// </remarks>
    internal interface IRepositoryBackend
    {
        /// <summary>Where the repository is (a full folder path, a URL): shown to users and the catalog's key for it.</summary>
        string Location { get; }

        /// <summary>Where one object is, for messages (a full path, a URL). Touches nothing.</summary>
        string Locate(string name);

        /// <summary>
        /// False when the location itself does not exist or cannot be reached (an unmounted share, a missing bucket):
        /// opening a repository then says so, rather than "no repository here". A backend that can tell why it cannot
        /// reach the location (an endpoint that refuses connections) may throw <see cref="IOException"/> saying so instead.
        /// </summary>
        bool LocationExists();

        /// <summary>
        /// Makes the location for a new repository and checks that it holds nothing (else <see cref="IOException"/>):
        /// a repository needs a location of its own. A backend with folders makes one per prefix in
        /// <paramref name="prefixes"/>, so that the layout shows from the start; an object store has nothing to make.
        /// </summary>
        void CreateLocation(IReadOnlyCollection<string> prefixes);

        /// <summary>Puts a whole object atomically and durably; a name that exists throws <see cref="ObjectExistsException"/>.</summary>
        void Put(string name, byte[] content);

        /// <summary>
        /// Starts writing an object too large to hold in memory (a pack). Nothing is visible under
        /// <paramref name="name"/> until <see cref="IObjectWriter.Commit"/> returns; disposing the writer without
        /// committing leaves nothing.
        /// </summary>
        IObjectWriter OpenWrite(string name);

        /// <summary>
        /// Opens an object for reads of any range. The handle stays open for many reads (a restore reads a pack
        /// block by block); <see cref="ObjectNotFoundException"/> when there is no such object.
        /// </summary>
        IObjectReader OpenRead(string name);

        /// <summary>An object's length and time, or null when there is no such object.</summary>
        ObjectInfo? GetInfo(string name);

        /// <summary>
        /// Every object whose name starts with <paramref name="prefix"/> (at any depth), in no particular order.
        /// Empty only when there is none; a location that cannot be listed throws. Objects put or deleted while the
        /// listing runs may or may not be in it; leftovers of writes are never in it.
        /// </summary>
        IReadOnlyList<ObjectInfo> List(string prefix);

        /// <summary>Deletes an object; one that does not exist is not an error.</summary>
        void Delete(string name);

        /// <summary>
        /// Removes what writes that never committed left behind (a killed process's temporary files, unfinished
        /// uploads) once older than <paramref name="olderThan"/>, so that a write still going on elsewhere is spared.
        /// Returns how many it removed.
        /// </summary>
        int RemoveAbandoned(TimeSpan olderThan);
    }

    /// <summary>An open object, read by range. Objects never change, so neither does its length.</summary>
    internal interface IObjectReader : IDisposable
    {
        long Length { get; }

        /// <summary>
        /// Reads up to <paramref name="count"/> bytes at <paramref name="offset"/> and returns how many there were:
        /// fewer only at the end of the object.
        /// </summary>
        int ReadAt(long offset, byte[] buffer, int index, int count);
    }

    /// <summary>An object being written, invisible until <see cref="Commit"/>; disposed uncommitted, it leaves nothing.</summary>
    internal interface IObjectWriter : IDisposable
    {
        /// <summary>Bytes written so far (the offset of the next write).</summary>
        long Length { get; }

        void Write(byte[] buffer, int index, int count);

        /// <summary>
        /// Makes the object visible under its name, whole and durable; throws <see cref="ObjectExistsException"/>
        /// if the name exists. After a failed write or commit the writer only discards.
        /// </summary>
        void Commit();
    }

    /// <summary>An object as a backend knows it.</summary>
    internal sealed class ObjectInfo
    {
        public ObjectInfo(string name, long? length, DateTime? lastModifiedUtc, DateTime? retainUntilUtc = null)
        {
            Name = name;
            Length = length;
            LastModifiedUtc = lastModifiedUtc;
            RetainUntilUtc = retainUntilUtc;
        }

        public string Name { get; }

        /// <summary>
        /// Bytes; always given by <see cref="IRepositoryBackend.GetInfo"/>. A listing gives it where it costs nothing
        /// more (an object store's listing has it), and leaves it null where it would cost a round trip per object
        /// (a folder on a share: readdir names the files, each length is one more stat).
        /// </summary>
        public long? Length { get; }

        /// <summary>As <see cref="Length"/>.</summary>
        public DateTime? LastModifiedUtc { get; }

        /// <summary>
        /// Until when the store refuses to delete the object (S3 Object Lock retention), or null: given by
        /// <see cref="IRepositoryBackend.GetInfo"/> of a backend that has retention, never by a listing.
        /// </summary>
        public DateTime? RetainUntilUtc { get; }

        /// <summary>Whether the store still refuses to delete the object at <paramref name="nowUtc"/>.</summary>
        public bool IsRetained(DateTime nowUtc) => RetainUntilUtc.HasValue && RetainUntilUtc.Value > nowUtc;

        public override string ToString() => Name;
    }

    /// <summary>No object of that name (never a location that cannot be reached: that is a plain <see cref="IOException"/>).</summary>
    internal sealed class ObjectNotFoundException : FileNotFoundException
    {
        public ObjectNotFoundException(string message, string location) : base(message, location) { }
    }

    /// <summary>A new repository's location already holds something (a repository, other files or objects).</summary>
    internal sealed class LocationNotEmptyException : IOException
    {
        public LocationNotEmptyException(string message) : base(message) { }
    }

    /// <summary>An object of that name exists, and objects are put once.</summary>
    internal sealed class ObjectExistsException : IOException
    {
        public ObjectExistsException(string message) : base(message) { }
    }
}
